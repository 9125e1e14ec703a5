// Times the training scans on CUDA through the ops API: Mamba-2 SSD forward (the bf16 tensor-core
// chunked scan, fast_bf16) + each backward (the exact fp32 scan, the GEMM form in fp32 and in
// bf16/TF32, the fused tensor-core form) at the issue's shapes (n_heads 32, head_dim 64, d_state
// 128, n_groups 1), the Mamba-1 selective scan forward + backward at one training shape, and the
// Mamba-3 SISO scan forward (bf16 tensor cores) + each backward (the exact fp32 scan, the fp32 GEMM
// form, the fused tensor-core form) at its issue shapes, and Mamba-3 MIMO rank 4 (the tensor-core
// forward, the exact backward: the only one that takes MIMO) at 8 x 2048. Inputs are f32 tensors on the GPU
// (the forward rounds x/B/C to bf16 itself; the official kernels take bf16): CUDA events on the ops' stream,
// warm-ups, median of the reps. The fused rows are also timed with bf16 tensors in ("bf16 tensors in":
// forward and backward read x/B/C/q/k/dy as they are and the forward writes y in bf16, no conversion pass),
// as the official kernels take them. The gradient diffs (stderr) compare each backward with the exact fp32
// scan on the same f32 inputs and, for the fused one, also on the bf16-rounded inputs (its own rounding: the
// input rounding is inherent to bf16 operands). Usage: cuda_bwd_bench [--quick] [--ssd | --mamba3] (--quick:
// fewer reps; --ssd: Mamba-2 only;
// --mamba3: Mamba-3 only)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "core/tensor.h"
#include "ops/exec.h"
#include "ops/kernels.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/selective_scan/selective_scan.h"
#include "ops/ssd/ssd.h"

// The bench's execution context (never destroyed: CUDA objects must not outlive the driver).
static mamba::ops::Exec& exec = *new mamba::ops::Exec();
// Bound for the whole run: the kernel-table calls and the timing's stream queries have no op front
// to bind it.
static const mamba::ops::ExecScope bind_exec{exec};

namespace {

using namespace mamba;
using namespace mamba::ops;

Tensor random_cuda(const Shape& shape, std::mt19937& rng, float lo, float hi) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = dist(rng);
  return Tensor::from_vector(v, shape).to(Device::cuda);
}

// t with its values rounded to bf16 (still f32).
Tensor round_bf16(const Tensor& t) {
  return t.to(DType::bf16).to(DType::f32);
}

// max |a − b| / max(1, max |b|) over the gradients (a sanity check of the timed paths).
float scaled_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  float diff = 0.0f, scale = 1.0f;
  for (size_t i = 0; i < va.size(); ++i) {
    diff = std::max(diff, std::fabs(va[i] - vb[i]));
    scale = std::max(scale, std::fabs(vb[i]));
  }
  return diff / scale;
}

void print_diffs(const char* name, const SsdGrads& g, const SsdGrads& ref) {
  std::fprintf(stderr, "%s vs exact: dx %.1e ddt %.1e dA %.1e dB %.1e dC %.1e dD %.1e\n", name,
               scaled_diff(g.dx, ref.dx), scaled_diff(g.ddt, ref.ddt), scaled_diff(g.dA, ref.dA),
               scaled_diff(g.dB, ref.dB), scaled_diff(g.dC, ref.dC), scaled_diff(g.dD, ref.dD));
}

template <class F>
double median_ms(F&& fn, int reps, int warmup = 3) {
  cudaStream_t s = mamba::cuda::stream();
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<float> ms(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(start, s));
    fn();
    CUDA_CHECK(cudaEventRecord(stop, s));
    CUDA_CHECK(cudaEventSynchronize(stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms[static_cast<size_t>(i)], start, stop));
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// One table row: the forward's median ms (`f`, measured once per shape by the caller), the
// backward's, and the two in sequence.
template <class F, class B>
void time_row(const std::string& label, int64_t batch, int64_t seq_len, double f, F&& fwd, B&& bwd,
              int reps) {
  const double b = median_ms(bwd, reps);
  const double fb = median_ms(
      [&] {
        fwd();
        bwd();
      },
      reps);
  std::printf("| %s | %lld×%lld | %.3f | %.3f | %.3f |\n", label.c_str(), static_cast<long long>(batch),
              static_cast<long long>(seq_len), f, b, fb);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, ssd_only = false, mamba3_only = false;
  for (int i = 1; i < argc; ++i) {
    quick = quick || std::strcmp(argv[i], "--quick") == 0;
    ssd_only = ssd_only || std::strcmp(argv[i], "--ssd") == 0;
    mamba3_only = mamba3_only || std::strcmp(argv[i], "--mamba3") == 0;
  }
  const int reps = quick ? 5 : 20;
  std::mt19937 rng(7);
  // The official kernels' times belong beside these only from the same GPU call
  // (scripts/gpu_train.sh official bwdbench; scripts/training_table.py).
  std::printf("| scan | shape | fwd ms | bwd ms | fwd+bwd ms |\n");
  std::printf("|---|---|---|---|---|\n");
  struct Ssd {
    int64_t batch, seq_len;
  };
  constexpr int64_t H = 32, P = 64, N = 128, G = 1;
  for (const Ssd s : {Ssd{8, 2048}, {2, 8192}, {1, 32768}}) {
    if (mamba3_only) break;
    SsdArgs a;
    a.x = random_cuda({s.batch, s.seq_len, H, P}, rng, -1.0f, 1.0f);
    a.dt = random_cuda({s.batch, s.seq_len, H}, rng, 0.001f, 0.1f);
    a.A = random_cuda({H}, rng, -8.0f, -1.0f);
    a.B = random_cuda({s.batch, s.seq_len, G, N}, rng, -1.0f, 1.0f);
    a.C = random_cuda({s.batch, s.seq_len, G, N}, rng, -1.0f, 1.0f);
    a.D = random_cuda({H}, rng, -1.0f, 1.0f);
    a.fast_bf16 = true;
    const Tensor dy = random_cuda({s.batch, s.seq_len, H, P}, rng, -1.0f, 1.0f);
    auto fwd = [&] {
      Tensor state = Tensor::zeros({s.batch, H, P, N}, DType::f32, Device::cuda);
      (void)ssd_fwd(exec, a, state);
    };
    // Backwards: the exact chunk-parallel scan, and the GEMM (chunked matrix) form in fp32 and with
    // bf16/TF32 tensor cores (fast_bf16, what ssd_bwd runs for this forward).
    SsdArgs a32 = a;
    a32.fast_bf16 = false;
    struct Bwd {
      const char* name;
      SsdGrads (*fn)(const SsdArgs&, const Tensor&);
      const SsdArgs* args;
    };
    const double f = median_ms(fwd, reps);
    for (const Bwd& v : {Bwd{"exact fp32 scan", cuda_kernels().ssd.bwd_exact, &a},
                         Bwd{"GEMM form fp32", cuda_kernels().ssd.bwd_gemm, &a32},
                         Bwd{"GEMM form bf16/TF32", cuda_kernels().ssd.bwd_gemm, &a},
                         Bwd{"fused tensor-core bf16", cuda_kernels().ssd.bwd_fast, &a}}) {
      time_row(
          std::string("Mamba-2 SSD, bwd ") + v.name, s.batch, s.seq_len, f, fwd,
          [&] { (void)v.fn(*v.args, dy); }, reps);
    }
    {  // bf16 tensors in, as the official kernels take them: no conversion pass in the forward (x,
       // B, C read as they are, y written in bf16) or the fused backward (x, B, C, dy read as they are).
      SsdArgs b16 = a;
      for (Tensor* t : {&b16.x, &b16.B, &b16.C}) *t = t->to(DType::bf16);
      b16.bf16_out = true;
      const Tensor dy16 = dy.to(DType::bf16);
      auto fwd16 = [&] {
        Tensor state = Tensor::zeros({s.batch, H, P, N}, DType::f32, Device::cuda);
        (void)ssd_fwd(exec, b16, state);
      };
      time_row(
          "Mamba-2 SSD, bwd fused tensor-core bf16, bf16 tensors in", s.batch, s.seq_len,
          median_ms(fwd16, reps), fwd16, [&] { (void)cuda_kernels().ssd.bwd_fast(b16, dy16); }, reps);
      SsdArgs r = a;  // the same values in f32
      for (Tensor* t : {&r.x, &r.B, &r.C}) *t = round_bf16(*t);
      print_diffs("fused bf16, bf16 tensors in", cuda_kernels().ssd.bwd_fast(b16, dy16),
                  cuda_kernels().ssd.bwd_exact(r, round_bf16(dy)));
    }
    const SsdGrads ref = cuda_kernels().ssd.bwd_exact(a, dy);
    print_diffs("GEMM fp32", cuda_kernels().ssd.bwd_gemm(a32, dy), ref);
    print_diffs("GEMM bf16/TF32", cuda_kernels().ssd.bwd_gemm(a, dy), ref);
    print_diffs("fused bf16", cuda_kernels().ssd.bwd_fast(a, dy), ref);
    // The fused kernel's own rounding: the exact scan on the same bf16-rounded x, B, C, dy.
    SsdArgs r = a;
    for (Tensor* t : {&r.x, &r.B, &r.C}) *t = round_bf16(*t);
    const Tensor dy_r = round_bf16(dy);
    print_diffs("fused bf16 (bf16 inputs)", cuda_kernels().ssd.bwd_fast(r, dy_r),
                cuda_kernels().ssd.bwd_exact(r, dy_r));
  }
  if (ssd_only) return 0;
  // Mamba-3 SISO: the bf16 tensor-core forward (fast_bf16) + each fp32 backward.
  for (const Ssd s : {Ssd{8, 2048}, {2, 8192}, {1, 32768}}) {
    Mamba3ScanArgs a;
    a.x = random_cuda({s.batch, s.seq_len, H, P}, rng, -1.0f, 1.0f);
    a.q = random_cuda({s.batch, s.seq_len, 1, H, N}, rng, -1.0f, 1.0f);
    a.k = random_cuda({s.batch, s.seq_len, 1, H, N}, rng, -1.0f, 1.0f);
    a.adt = random_cuda({s.batch, s.seq_len, H}, rng, -0.8f, -0.001f);
    a.dt = random_cuda({s.batch, s.seq_len, H}, rng, 0.001f, 0.1f);
    a.trap = random_cuda({s.batch, s.seq_len, H}, rng, 0.0f, 1.0f);
    a.D = random_cuda({H}, rng, -1.0f, 1.0f);
    a.chunk_size = 64;
    a.fast_bf16 = true;
    const Tensor dy = random_cuda({s.batch, s.seq_len, 1, H, P}, rng, -1.0f, 1.0f);
    Tensor y = Tensor::empty({s.batch, s.seq_len, 1, H, P}, DType::f32, Device::cuda);
    // The forward of `args` from a zero state into `out`.
    auto forward_of = [&](const Mamba3ScanArgs& args, Tensor& out) {
      return [&, in = &args, y_out = &out] {
        Mamba3ScanState st{Tensor::zeros({s.batch, H, P, N}, DType::f32, Device::cuda),
                           Tensor::zeros({s.batch, 1, H, N}, DType::f32, Device::cuda),
                           Tensor::zeros({s.batch, H, P}, DType::f32, Device::cuda)};
        mamba3_scan_fwd(exec, *in, st, *y_out);
      };
    };
    auto fwd = forward_of(a, y);
    // Backwards: the exact chunk-parallel scan, and the GEMM (chunked matrix) form, both fp32
    // (mamba3_scan_bwd runs the GEMM form for SISO unless the plan says mamba3_bwd=exact).
    struct M3Bwd {
      const char* name;
      Mamba3ScanGrads (*fn)(const Mamba3ScanArgs&, const Tensor&);
    };
    const double f = median_ms(fwd, reps);
    for (const M3Bwd& v : {M3Bwd{"exact fp32 scan", cuda_kernels().mamba3_scan.bwd_exact},
                           M3Bwd{"GEMM form fp32", cuda_kernels().mamba3_scan.bwd_gemm},
                           M3Bwd{"fused tensor-core bf16", cuda_kernels().mamba3_scan.bwd_fast}}) {
      time_row(
          std::string("Mamba-3 SISO, chunk 64, bwd ") + v.name, s.batch, s.seq_len, f, fwd,
          [&] { (void)v.fn(a, dy); }, reps);
    }
    {  // bf16 tensors in (x, q, k, dy), y written in bf16: no conversion pass, as the official kernels.
      Mamba3ScanArgs b16 = a;
      for (Tensor* t : {&b16.x, &b16.q, &b16.k}) *t = t->to(DType::bf16);
      const Tensor dy16 = dy.to(DType::bf16);
      Tensor y16 = Tensor::empty({s.batch, s.seq_len, 1, H, P}, DType::bf16, Device::cuda);
      auto fwd16 = forward_of(b16, y16);
      time_row(
          "Mamba-3 SISO, chunk 64, bwd fused tensor-core bf16, bf16 tensors in", s.batch, s.seq_len,
          median_ms(fwd16, reps), fwd16, [&] { (void)cuda_kernels().mamba3_scan.bwd_fast(b16, dy16); }, reps);
      const Mamba3ScanGrads g16 = cuda_kernels().mamba3_scan.bwd_fast(b16, dy16);
      Mamba3ScanArgs r = a;  // the same values in f32
      for (Tensor* t : {&r.x, &r.q, &r.k}) *t = round_bf16(*t);
      const Mamba3ScanGrads e16 = cuda_kernels().mamba3_scan.bwd_exact(r, round_bf16(dy));
      std::fprintf(stderr,
                   "Mamba-3 fused bf16, bf16 tensors in vs exact: dx %.1e dq %.1e dk %.1e dadt %.1e ddt %.1e "
                   "dtrap %.1e dD %.1e\n",
                   scaled_diff(g16.dx, e16.dx), scaled_diff(g16.dq, e16.dq), scaled_diff(g16.dk, e16.dk),
                   scaled_diff(g16.dadt, e16.dadt), scaled_diff(g16.ddt, e16.ddt),
                   scaled_diff(g16.dtrap, e16.dtrap), scaled_diff(g16.dD, e16.dD));
    }
    const Mamba3ScanGrads ref = cuda_kernels().mamba3_scan.bwd_exact(a, dy);
    auto print_m3 = [](const char* name, const Mamba3ScanGrads& g, const Mamba3ScanGrads& e) {
      std::fprintf(stderr,
                   "Mamba-3 %s vs exact: dx %.1e dq %.1e dk %.1e dadt %.1e ddt %.1e dtrap %.1e dD %.1e\n",
                   name, scaled_diff(g.dx, e.dx), scaled_diff(g.dq, e.dq), scaled_diff(g.dk, e.dk),
                   scaled_diff(g.dadt, e.dadt), scaled_diff(g.ddt, e.ddt), scaled_diff(g.dtrap, e.dtrap),
                   scaled_diff(g.dD, e.dD));
    };
    for (const M3Bwd& v : {M3Bwd{"GEMM", cuda_kernels().mamba3_scan.bwd_gemm},
                           M3Bwd{"fused bf16", cuda_kernels().mamba3_scan.bwd_fast}})
      print_m3(v.name, v.fn(a, dy), ref);
    // The fused kernel's own rounding: the exact scan on the same bf16-rounded x, q, k, dy.
    Mamba3ScanArgs r = a;
    for (Tensor* t : {&r.x, &r.q, &r.k}) *t = round_bf16(*t);
    const Tensor dy_r = round_bf16(dy);
    print_m3("fused bf16 (bf16 inputs)", cuda_kernels().mamba3_scan.bwd_fast(r, dy_r),
             cuda_kernels().mamba3_scan.bwd_exact(r, dy_r));
  }
  if (!mamba3_only) {
    const int64_t batch = 8, L = 2048, DI = 2048, NS = 16;
    SelectiveScanArgs a;
    a.u = random_cuda({batch, L, DI}, rng, -1.0f, 1.0f);
    a.delta = random_cuda({batch, L, DI}, rng, -4.0f, 0.0f);
    a.delta_bias = random_cuda({DI}, rng, -1.0f, 0.0f);
    a.A = random_cuda({DI, NS}, rng, -4.0f, -0.1f);
    a.B = random_cuda({batch, L, NS}, rng, -1.0f, 1.0f);
    a.C = random_cuda({batch, L, NS}, rng, -1.0f, 1.0f);
    a.D = random_cuda({DI}, rng, -1.0f, 1.0f);
    a.z = random_cuda({batch, L, DI}, rng, -3.0f, 3.0f);
    const Tensor dy = random_cuda({batch, L, DI}, rng, -1.0f, 1.0f);
    auto fwd = [&] {
      Tensor state = Tensor::zeros({batch, DI, NS}, DType::f32, Device::cuda);
      (void)selective_scan_fwd(exec, a, state);
    };
    time_row(
        "Mamba-1 scan, d_inner 2048, d_state 16, gated", batch, L, median_ms(fwd, reps), fwd,
        [&] { (void)selective_scan_bwd(exec, a, dy); }, reps);
  }
  // Mamba-3 MIMO rank 4 at 8 x 2048 (the issue asks for at most twice SISO's fwd+bwd at a shape): the
  // bf16 tensor-core forward and the one backward that takes MIMO, the exact chunk-parallel scan.
  if (!ssd_only) {
    const int64_t batch = 8, L = 2048, R = 4;
    Mamba3ScanArgs a;
    a.x = random_cuda({batch, L, H, P}, rng, -1.0f, 1.0f);
    a.q = random_cuda({batch, L, R, H, N}, rng, -1.0f, 1.0f);
    a.k = random_cuda({batch, L, R, H, N}, rng, -1.0f, 1.0f);
    a.adt = random_cuda({batch, L, H}, rng, -0.8f, -0.001f);
    a.dt = random_cuda({batch, L, H}, rng, 0.001f, 0.1f);
    a.trap = random_cuda({batch, L, H}, rng, 0.0f, 1.0f);
    a.D = random_cuda({H}, rng, -1.0f, 1.0f);
    a.mimo_x = random_cuda({H, R, P}, rng, 0.0f, 1.0f);
    a.chunk_size = 64;
    a.fast_bf16 = true;
    const Tensor dy = random_cuda({batch, L, R, H, P}, rng, -1.0f, 1.0f);
    Tensor y = Tensor::empty({batch, L, R, H, P}, DType::f32, Device::cuda);
    auto fwd = [&] {
      Mamba3ScanState st{Tensor::zeros({batch, H, P, N}, DType::f32, Device::cuda),
                         Tensor::zeros({batch, R, H, N}, DType::f32, Device::cuda),
                         Tensor::zeros({batch, H, P}, DType::f32, Device::cuda)};
      mamba3_scan_fwd(exec, a, st, y);
    };
    time_row(
        "Mamba-3 MIMO rank 4, chunk 64, bwd exact fp32 scan", batch, L, median_ms(fwd, reps), fwd,
        [&] { (void)cuda_kernels().mamba3_scan.bwd_exact(a, dy); }, reps);
  }
  return 0;
}
