// Times the training scans on CUDA through the ops API: Mamba-2 SSD forward (the bf16 tensor-core
// chunked scan, fast_bf16) + ssd_bwd (fp32, chunk-parallel) at the issue's shapes (n_heads 32,
// head_dim 64, d_state 128, n_groups 1), and the Mamba-1 selective scan forward + backward at one
// training shape, and the Mamba-3 SISO scan forward (bf16 tensor cores) + mamba3_scan_bwd (fp32) at
// its issue shapes. Inputs are f32 tensors on the GPU (the forward rounds x/B/C to bf16 itself; the
// official kernels take bf16): CUDA events on the ops' stream, warm-ups, median of the reps.
// Usage: cuda_bwd_bench [--quick]   (--quick: fewer reps)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "core/tensor.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/selective_scan/selective_scan.h"
#include "ops/ssd/ssd.h"

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

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps = quick ? 5 : 20;
  std::mt19937 rng(7);
  std::printf("| scan | shape | fwd ms | bwd ms | fwd+bwd ms | official fwd+bwd ms |\n");
  std::printf("|---|---|---|---|---|---|\n");
  struct Ssd {
    int64_t batch, seq_len;
    double official_ms;
  };
  constexpr int64_t H = 32, P = 64, N = 128, G = 1;
  for (const Ssd s : {Ssd{8, 2048, 4.22}, {2, 8192, 6.49}, {1, 32768, 5.75}}) {
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
      (void)ssd_fwd(a, state);
    };
    auto bwd = [&] { (void)ssd_bwd(a, dy); };
    const double f = median_ms(fwd, reps), b = median_ms(bwd, reps);
    const double fb = median_ms(
        [&] {
          fwd();
          bwd();
        },
        reps);
    std::printf("| Mamba-2 SSD | %lld×%lld | %.3f | %.3f | %.3f | %.2f |\n", static_cast<long long>(s.batch),
                static_cast<long long>(s.seq_len), f, b, fb, s.official_ms);
  }
  // Mamba-3 SISO: the bf16 tensor-core forward (fast_bf16) + mamba3_scan_bwd (fp32, chunk-parallel).
  for (const Ssd s : {Ssd{8, 2048, 3.31}, {2, 8192, 3.99}, {1, 32768, 14.53}}) {
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
    auto fwd = [&] {
      Mamba3ScanState st{Tensor::zeros({s.batch, H, P, N}, DType::f32, Device::cuda),
                         Tensor::zeros({s.batch, 1, H, N}, DType::f32, Device::cuda),
                         Tensor::zeros({s.batch, H, P}, DType::f32, Device::cuda)};
      mamba3_scan_fwd(a, st, y);
    };
    auto bwd = [&] { (void)mamba3_scan_bwd(a, dy); };
    const double f = median_ms(fwd, reps), b = median_ms(bwd, reps);
    const double fb = median_ms(
        [&] {
          fwd();
          bwd();
        },
        reps);
    std::printf("| Mamba-3 SISO, chunk 64 | %lld×%lld | %.3f | %.3f | %.3f | %.2f |\n",
                static_cast<long long>(s.batch), static_cast<long long>(s.seq_len), f, b, fb, s.official_ms);
  }
  {
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
      (void)selective_scan_fwd(a, state);
    };
    auto bwd = [&] { (void)selective_scan_bwd(a, dy); };
    const double f = median_ms(fwd, reps), b = median_ms(bwd, reps);
    const double fb = median_ms(
        [&] {
          fwd();
          bwd();
        },
        reps);
    std::printf("| Mamba-1 scan, d_inner 2048, d_state 16, gated | 8×2048 | %.3f | %.3f | %.3f | - |\n", f, b,
                fb);
  }
  return 0;
}
