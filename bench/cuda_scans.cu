// Checks and times the tensor-core scans (ssd_fast_fwd, mamba3_scan_fast_fwd SISO and MIMO) and the
// Mamba-2 step (ssd_step) against sequential fp32 CUDA references on the same bf16 inputs, at the
// issue's shapes; prints a markdown table against the official kernels' times and the roofline.
// Usage: cuda_scans_bench [--check-only | --quick | --small] [--profile]
//   --quick: small-shape checks, then the timings; --small: small-shape checks only (for
//   compute-sanitizer); --profile: one launch of each scan (for ncu)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "ops/mamba3_scan/mamba3_scan_fast.cuh"
#include "ops/ssd/ssd_fast.cuh"
#include "ops/ssd/ssd_step.cuh"

#ifdef CUDA_SCANS_STANDALONE  // built with plain nvcc, without the backend library
namespace mamba::cuda {
void cuda_failed(cudaError_t err, const char* file, int line, const char* expr) {
  std::fprintf(stderr, "%s:%d: %s: %s\n", file, line, expr, cudaGetErrorString(err));
  std::abort();
}
}  // namespace mamba::cuda
#endif

namespace {

using namespace mamba::ops::cuda;
using bf16 = __nv_bfloat16;

constexpr double kCopyTBs = 3.0, kMatmulTFLOPs = 790.0;  // the issue's hardware limits (H100)
constexpr int kHeads = 32, kHeadDim = 64, kDState = 128;

// ---- device memory, random inputs, poison ----

template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count = 0) : n(count) {
    if (n) CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(T)));
  }
  ~DeviceArray() {
    if (ptr) CUDA_CHECK(cudaFree(ptr));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : ptr(o.ptr), n(o.n) { o.ptr = nullptr, o.n = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr, o.ptr), std::swap(n, o.n);
    return *this;
  }
  size_t bytes() const { return n * sizeof(T); }
  void poison() { CUDA_CHECK(cudaMemset(ptr, 0xFF, bytes())); }  // NaN in bf16 and f32
  std::vector<float> to_host() const {
    std::vector<T> raw(n);
    CUDA_CHECK(cudaMemcpy(raw.data(), ptr, bytes(), cudaMemcpyDeviceToHost));
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(raw[i]);
    return out;
  }
};

__device__ __forceinline__ float to_f(float v) {
  return v;
}
__device__ __forceinline__ float to_f(bf16 v) {
  return __bfloat162float(v);
}

template <typename T>
__global__ void fill_uniform_kernel(T* out, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
    out[i] = static_cast<T>(lo + (hi - lo) * u);
  }
}

uint64_t g_seed = 1234;
template <typename T>
void fill(DeviceArray<T>& a, float lo, float hi) {
  fill_uniform_kernel<T><<<1024, 256>>>(a.ptr, a.n, ++g_seed, lo, hi);
  CUDA_CHECK_LAUNCH();
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// ---- sequential fp32 references: one warp per (batch, head, p), lane n = lane + 32j ----

// Mamba-2 (SPEC §2.3 definition = §2.4 per token). Contiguous layouts; TX is the dtype of x, B, C.
template <typename TX, typename TD>
__global__ void ssd_ref_kernel(int batch, int seq_len, int H, int P, int G, int N, const TX* x, const TD* dt,
                               const float* dt_bias, bool dt_softplus, const float* A, const TX* Bm,
                               const TX* Cm, const float* D, const float* init, float* y,
                               float* final_state) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  if (warp >= batch * H * P) return;
  const int p = warp % P, h = (warp / P) % H, b = warp / (P * H), g = h / (H / G);
  float s[4];
  for (int j = 0; j < 4; ++j) {
    const int n = lane + 32 * j;
    s[j] = n < N && init ? init[((int64_t(b) * H + h) * P + p) * N + n] : 0.0f;
  }
  for (int t = 0; t < seq_len; ++t) {
    const int64_t bt = int64_t(b) * seq_len + t;
    float dtv = to_f(dt[bt * H + h]);
    if (dt_bias) dtv += dt_bias[h];
    if (dt_softplus) dtv = dtv <= 20.0f ? log1pf(expf(dtv)) : dtv;
    const float dA = expf(dtv * A[h]), xv = to_f(x[(bt * H + h) * P + p]);
    float acc = 0.0f;
    for (int j = 0; j < 4; ++j) {
      const int n = lane + 32 * j;
      if (n >= N) continue;
      s[j] = s[j] * dA + dtv * xv * to_f(Bm[(bt * G + g) * N + n]);
      acc += to_f(Cm[(bt * G + g) * N + n]) * s[j];
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(bt * H + h) * P + p] = acc + (D ? D[h] : 0.0f) * xv;
  }
  for (int j = 0; j < 4; ++j) {
    const int n = lane + 32 * j;
    if (n < N) final_state[((int64_t(b) * H + h) * P + p) * N + n] = s[j];
  }
}

// Mamba-3 (SPEC §3.4), rank R ≤ kMaxRank, v_{t,r} = x_t ⊙ mimo_x[h, r] (x_t when mimo_x is null):
// S_t = α S + β Σ_r v_{t−1,r}k_{t−1,r}ᵀ + γ Σ_r v_{t,r}k_{t,r}ᵀ, y_{t,r} = S q_{t,r} + D v_{t,r}.
// q, k, y: [batch, seq_len, R, H, ·]; k_prev: [batch, R, H, N].
constexpr int kMaxRank = 4;
__global__ void mamba3_ref_kernel(int batch, int seq_len, int R, int H, int P, int N, const bf16* x,
                                  const bf16* q, const bf16* k, const float* mimo_x, const float* adt,
                                  const float* dt, const float* trap, const float* D, const float* ssm_in,
                                  const float* k_prev_in, const float* v_prev_in, float* y, float* ssm_out) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  if (warp >= batch * H * P) return;
  const int p = warp % P, h = (warp / P) % H, b = warp / (P * H);
  const int64_t bh = int64_t(b) * H + h;
  float s[4], kp[kMaxRank][4], mx[kMaxRank];
  float vp = v_prev_in ? v_prev_in[bh * P + p] : 0.0f;
  for (int r = 0; r < R; ++r) mx[r] = mimo_x ? mimo_x[(h * R + r) * P + p] : 1.0f;
  for (int j = 0; j < 4; ++j) {
    const int n = lane + 32 * j;
    s[j] = n < N && ssm_in ? ssm_in[(bh * P + p) * N + n] : 0.0f;
    for (int r = 0; r < R; ++r)
      kp[r][j] = n < N && k_prev_in ? k_prev_in[((int64_t(b) * R + r) * H + h) * N + n] : 0.0f;
  }
  for (int t = 0; t < seq_len; ++t) {
    const int64_t at = (int64_t(b) * seq_len + t) * H + h, rt = (int64_t(b) * seq_len + t) * R;
    const float alpha = expf(adt[at]), lambda = trap[at];
    const float beta = (1.0f - lambda) * dt[at] * alpha, gamma = lambda * dt[at];
    const float xv = to_f(x[at * P + p]);
    for (int j = 0; j < 4; ++j) {
      const int n = lane + 32 * j;
      if (n >= N) continue;
      s[j] *= alpha;
      for (int r = 0; r < R; ++r) {
        const float kt = to_f(k[((rt + r) * H + h) * N + n]);
        s[j] += beta * vp * mx[r] * kp[r][j] + gamma * xv * mx[r] * kt;
        kp[r][j] = kt;
      }
    }
    for (int r = 0; r < R; ++r) {
      float acc = 0.0f;
      for (int j = 0; j < 4; ++j) {
        const int n = lane + 32 * j;
        if (n < N) acc += s[j] * to_f(q[((rt + r) * H + h) * N + n]);
      }
      acc = warp_sum(acc);
      if (lane == 0) y[((rt + r) * H + h) * P + p] = acc + (D ? D[h] : 0.0f) * xv * mx[r];
    }
    vp = xv;
  }
  for (int j = 0; j < 4; ++j) {
    const int n = lane + 32 * j;
    if (n < N) ssm_out[(bh * P + p) * N + n] = s[j];
  }
}

unsigned int warp_blocks(int64_t warps) {
  return static_cast<unsigned int>((warps * 32 + 255) / 256);
}

// ---- comparison ----

struct Check {
  double max_abs = 0, rel = 0;
  size_t non_finite = 0;
  bool pass(double tol) const { return non_finite == 0 && rel < tol; }
};

Check compare(const std::vector<float>& out, const std::vector<float>& ref) {
  Check c;
  double diff2 = 0, ref2 = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      ++c.non_finite;
      continue;
    }
    const double d = double(out[i]) - ref[i];
    c.max_abs = std::max(c.max_abs, std::fabs(d));
    diff2 += d * d;
    ref2 += double(ref[i]) * ref[i];
  }
  c.rel = std::sqrt(diff2 / std::max(ref2, 1e-30));
  return c;
}

int g_failures = 0;
void report_check(const std::string& name, const Check& c, double tol) {
  const bool ok = c.pass(tol);
  g_failures += !ok;
  std::printf("check %-44s max_abs %.3e  rel %.3e  non_finite %zu  %s\n", name.c_str(), c.max_abs, c.rel,
              c.non_finite, ok ? "ok" : "FAIL");
}

// ---- timing: CUDA events, warm-up, median ----

template <typename F>
double median_ms(F&& launch, int reps = 30, int warmup = 3) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) launch(i);
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(start));
    launch(warmup + i);
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms[i], start, stop));
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

double measure_copy_tbs() {
  const size_t bytes = size_t(1) << 30;
  DeviceArray<char> a(bytes), b(bytes);
  CUDA_CHECK(cudaMemset(a.ptr, 1, bytes));
  const double ms =
      median_ms([&](int) { CUDA_CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice)); }, 10);
  return 2.0 * bytes / (ms * 1e-3) / 1e12;
}

struct Row {
  std::string kernel, shape;
  double ms, official_ms, target_ms, bytes, flops;
};
std::vector<Row> g_rows;

// ---- Mamba-2 chunked forward ----

struct Mamba2Problem {
  int batch, seq_len, H, P, G, N, chunk;
  DeviceArray<bf16> x, B, C, y;
  DeviceArray<float> dt, A, D, init, final_state, y_ref, final_ref;
  DeviceArray<char> workspace;
  SsdFastParams params;

  Mamba2Problem(int b, int l, int h, int g, int chunk_size)
      : batch(b),
        seq_len(l),
        H(h),
        P(kHeadDim),
        G(g),
        N(kDState),
        chunk(chunk_size),
        x(size_t(b) * l * h * P),
        B(size_t(b) * l * g * N),
        C(size_t(b) * l * g * N),
        y(size_t(b) * l * h * P),
        dt(size_t(b) * l * h),
        A(h),
        D(h),
        init(size_t(b) * h * P * N),
        final_state(size_t(b) * h * P * N) {
    fill(x, -1, 1), fill(B, -1, 1), fill(C, -1, 1), fill(dt, 0.001f, 0.1f), fill(A, -16, -1), fill(D, -1, 1);
    fill(init, -1, 1);
    SsdFastParams& s = params;
    s.batch = b, s.seq_len = l, s.n_heads = h, s.head_dim = P, s.n_groups = g, s.d_state = N,
    s.chunk_size = chunk;
    s.x = x.ptr, s.x_head_stride = P, s.x_seq_stride = int64_t(h) * P, s.x_batch_stride = int64_t(l) * h * P;
    s.dt = dt.ptr, s.dt_head_stride = 1, s.dt_seq_stride = h, s.dt_batch_stride = int64_t(l) * h;
    s.A = A.ptr, s.D = D.ptr;
    s.B = B.ptr, s.B_group_stride = N, s.B_seq_stride = int64_t(g) * N, s.B_batch_stride = int64_t(l) * g * N;
    s.C = C.ptr, s.C_group_stride = N, s.C_seq_stride = int64_t(g) * N, s.C_batch_stride = int64_t(l) * g * N;
    s.final_state = final_state.ptr, s.final_state_head_stride = int64_t(P) * N;
    s.final_state_batch_stride = int64_t(h) * P * N;
    s.initial_state_head_stride = s.final_state_head_stride,
    s.initial_state_batch_stride = s.final_state_batch_stride;
    s.y = y.ptr, s.y_head_stride = P, s.y_seq_stride = int64_t(h) * P, s.y_batch_stride = int64_t(l) * h * P;
    workspace = DeviceArray<char>(ssd_fast_workspace_bytes(s));
    s.workspace = workspace.ptr, s.workspace_bytes = workspace.bytes();
  }
  std::string shape() const { return std::to_string(batch) + "x" + std::to_string(seq_len); }

  // With a random initial state (in place when asked), against the sequential reference.
  void check(bool in_place) {
    y_ref = DeviceArray<float>(y.n), final_ref = DeviceArray<float>(final_state.n);
    ssd_ref_kernel<bf16, float><<<warp_blocks(int64_t(batch) * H * P), 256>>>(
        batch, seq_len, H, P, G, N, x.ptr, dt.ptr, nullptr, false, A.ptr, B.ptr, C.ptr, D.ptr, init.ptr,
        y_ref.ptr, final_ref.ptr);
    CUDA_CHECK_LAUNCH();
    y.poison(), final_state.poison();
    SsdFastParams s = params;
    if (in_place) CUDA_CHECK(cudaMemcpy(final_state.ptr, init.ptr, init.bytes(), cudaMemcpyDeviceToDevice));
    s.initial_state = in_place ? final_state.ptr : init.ptr;
    ssd_fast_fwd(s, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::string name = "mamba2 " + shape() + " H" + std::to_string(H) + " G" + std::to_string(G) +
                             (in_place ? " in-place" : "");
    report_check(name + " y", compare(y.to_host(), y_ref.to_host()), 2e-2);
    report_check(name + " final_state", compare(final_state.to_host(), final_ref.to_host()), 1e-2);
    y_ref = DeviceArray<float>(), final_ref = DeviceArray<float>();
  }

  void time(double official_ms, double target_ms) {
    SsdFastParams s = params;  // prefill: zero initial state, final state written
    const double ms = median_ms([&](int) { ssd_fast_fwd(s, nullptr); });
    const double tokens = double(batch) * seq_len;
    const double bytes =
        tokens * (H * P * 2.0 * 2 + G * N * 2.0 * 2 + H * 4.0) + double(batch) * H * P * N * 4;
    const double Q = chunk, n_chunks = tokens / Q;
    const double flops = n_chunks * (H * (4.0 * Q * N * P + Q * Q * P) + G * Q * Q * N);
    g_rows.push_back({"Mamba-2 fwd (chunk 256)", shape(), ms, official_ms, target_ms, bytes, flops});
  }
};

// ---- Mamba-3 chunked forward, SISO (R = 1) and MIMO (R = 2, 4: (token, rank) rows) ----

struct Mamba3Problem {
  int batch, seq_len, H, P, N, R;
  DeviceArray<bf16> x, q, k, y;
  DeviceArray<float> mimo_x, adt, dt, trap, D, ssm_in, k_prev_in, v_prev_in, ssm_out, k_prev_out, v_prev_out;
  DeviceArray<float> y_ref, ssm_ref;
  DeviceArray<char> workspace;
  Mamba3ScanFastParams params;

  Mamba3Problem(int b, int l, int h, int rank = 1)
      : batch(b),
        seq_len(l),
        H(h),
        P(kHeadDim),
        N(kDState),
        R(rank),
        x(size_t(b) * l * h * P),
        q(size_t(b) * l * rank * h * N),
        k(size_t(b) * l * rank * h * N),
        y(size_t(b) * l * rank * h * P),
        mimo_x(rank > 1 ? size_t(h) * rank * P : 0),
        adt(size_t(b) * l * h),
        dt(size_t(b) * l * h),
        trap(size_t(b) * l * h),
        D(h),
        ssm_in(size_t(b) * h * P * N),
        k_prev_in(size_t(b) * rank * h * N),
        v_prev_in(size_t(b) * h * P),
        ssm_out(size_t(b) * h * P * N),
        k_prev_out(size_t(b) * rank * h * N),
        v_prev_out(size_t(b) * h * P) {
    fill(x, -1, 1), fill(q, -1.7f, 1.7f), fill(k, -1.7f, 1.7f), fill(adt, -0.5f, 0.0f),
        fill(dt, 0.001f, 0.1f);
    fill(trap, 0, 1), fill(D, -1, 1), fill(ssm_in, -1, 1), fill(k_prev_in, -1.7f, 1.7f),
        fill(v_prev_in, -1, 1);
    if (R > 1) fill(mimo_x, 0, 1);
    const int64_t rows = int64_t(R) * h;  // q, k, y rows per token
    Mamba3ScanFastParams& m = params;
    m.batch = b, m.seq_len = l, m.n_heads = h, m.head_dim = P, m.d_state = N;
    m.mimo_rank = R, m.chunk_size = 64 / R;
    m.x = x.ptr, m.x_head_stride = P, m.x_seq_stride = int64_t(h) * P, m.x_batch_stride = int64_t(l) * h * P;
    m.q = q.ptr, m.q_head_stride = N, m.q_seq_stride = rows * N, m.q_batch_stride = l * rows * N;
    m.k = k.ptr, m.k_head_stride = N, m.k_seq_stride = rows * N, m.k_batch_stride = l * rows * N;
    m.q_rank_stride = m.k_rank_stride = int64_t(h) * N;
    if (R > 1) m.mimo_x = mimo_x.ptr, m.mimo_x_head_stride = int64_t(R) * P, m.mimo_x_rank_stride = P;
    m.adt = adt.ptr, m.dt = dt.ptr, m.trap = trap.ptr;
    m.dt_head_stride = 1, m.dt_seq_stride = h, m.dt_batch_stride = int64_t(l) * h;
    m.D = D.ptr;
    m.ssm_out = ssm_out.ptr, m.ssm_head_stride = int64_t(P) * N, m.ssm_batch_stride = int64_t(h) * P * N;
    m.k_prev_out = k_prev_out.ptr, m.k_prev_head_stride = N, m.k_prev_batch_stride = rows * N;
    m.k_prev_rank_stride = int64_t(h) * N;
    m.v_prev_out = v_prev_out.ptr, m.v_prev_head_stride = P, m.v_prev_batch_stride = int64_t(h) * P;
    m.y = y.ptr, m.y_head_stride = P, m.y_seq_stride = rows * P, m.y_batch_stride = l * rows * P;
    m.y_rank_stride = int64_t(h) * P;
    workspace = DeviceArray<char>(mamba3_scan_fast_workspace_bytes(m));
    m.workspace = workspace.ptr, m.workspace_bytes = workspace.bytes();
  }
  std::string shape() const { return std::to_string(batch) + "x" + std::to_string(seq_len); }
  std::string kind() const { return R == 1 ? "SISO" : "MIMO R=" + std::to_string(R); }

  // Continuing from a random (ssm, k_prev, v_prev), in place when asked.
  void check(bool in_place) {
    y_ref = DeviceArray<float>(y.n), ssm_ref = DeviceArray<float>(ssm_out.n);
    mamba3_ref_kernel<<<warp_blocks(int64_t(batch) * H * P), 256>>>(
        batch, seq_len, R, H, P, N, x.ptr, q.ptr, k.ptr, R > 1 ? mimo_x.ptr : nullptr, adt.ptr, dt.ptr,
        trap.ptr, D.ptr, ssm_in.ptr, k_prev_in.ptr, v_prev_in.ptr, y_ref.ptr, ssm_ref.ptr);
    CUDA_CHECK_LAUNCH();
    Mamba3ScanFastParams m = params;
    y.poison(), ssm_out.poison(), k_prev_out.poison(), v_prev_out.poison();
    if (in_place) {
      CUDA_CHECK(cudaMemcpy(ssm_out.ptr, ssm_in.ptr, ssm_in.bytes(), cudaMemcpyDeviceToDevice));
      CUDA_CHECK(cudaMemcpy(k_prev_out.ptr, k_prev_in.ptr, k_prev_in.bytes(), cudaMemcpyDeviceToDevice));
      CUDA_CHECK(cudaMemcpy(v_prev_out.ptr, v_prev_in.ptr, v_prev_in.bytes(), cudaMemcpyDeviceToDevice));
    }
    m.ssm_in = in_place ? ssm_out.ptr : ssm_in.ptr;
    m.k_prev_in = in_place ? k_prev_out.ptr : k_prev_in.ptr;
    m.v_prev_in = in_place ? v_prev_out.ptr : v_prev_in.ptr;
    mamba3_scan_fast_fwd(m, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::string name =
        "mamba3 " + kind() + " " + shape() + " H" + std::to_string(H) + (in_place ? " in-place" : "");
    report_check(name + " y", compare(y.to_host(), y_ref.to_host()), 2e-2);
    report_check(name + " ssm", compare(ssm_out.to_host(), ssm_ref.to_host()), 1e-2);
    // k_prev/v_prev: exact copies of the last token's k (all ranks) and x.
    std::vector<float> k_last, x_last;
    const std::vector<float> k_all = k.to_host(), x_all = x.to_host();
    for (int b = 0; b < batch; ++b) {
      const size_t t = size_t(b) * seq_len + seq_len - 1;
      k_last.insert(k_last.end(), k_all.begin() + t * R * H * N, k_all.begin() + (t + 1) * R * H * N);
      x_last.insert(x_last.end(), x_all.begin() + t * H * P, x_all.begin() + (t + 1) * H * P);
    }
    report_check(name + " k_prev", compare(k_prev_out.to_host(), k_last), 1e-6);
    report_check(name + " v_prev", compare(v_prev_out.to_host(), x_last), 1e-6);
    y_ref = DeviceArray<float>(), ssm_ref = DeviceArray<float>();
  }

  // state_chunk 0: the launcher's choice; else tokens per stored state (tuning rows).
  void time(double official_ms, double target_ms, int state_chunk = 0) {
    Mamba3ScanFastParams m = params;  // prefill: fresh state, final state written
    m.state_chunk = state_chunk;
    DeviceArray<char> ws(mamba3_scan_fast_workspace_bytes(m));
    m.workspace = ws.ptr, m.workspace_bytes = ws.bytes();
    const double ms = median_ms([&](int) { mamba3_scan_fast_fwd(m, nullptr); });
    const double tokens = double(batch) * seq_len;
    // x once, y, q and k per (token, rank) row, 3 fp32 coefficients; the final state, k_prev, v_prev.
    const double bytes = tokens * H * (P * 2.0 * (1 + R) + R * N * 2.0 * 2 + 3 * 4.0) +
                         double(batch) * H * (P * N + R * N + P) * 4;
    const double Q = 64, n_chunks = tokens * R / Q;  // 64-row chunks
    const double flops = n_chunks * H * (4.0 * Q * N * P + Q * Q * (N + P));
    const std::string states = state_chunk ? ", states every " + std::to_string(state_chunk) : "";
    g_rows.push_back({"Mamba-3 " + kind() + " fwd (chunk " + std::to_string(64 / R) + states + ")", shape(),
                      ms, official_ms, target_ms, bytes, flops});
  }
};

// ---- Mamba-2 step ----

// timed_copy_tbs 0: check against the reference; else time (target: 90% of that copy bandwidth).
template <typename T>
void step_problem(int batch, double official_ms, double timed_copy_tbs) {
  const bool timed = timed_copy_tbs > 0;
  const int H = kHeads, P = kHeadDim, N = kDState, G = 1;
  const size_t state_elems = size_t(batch) * H * P * N;
  // Rotate among enough state/input sets that they cannot stay in L2 between runs.
  const int n_sets =
      timed ? static_cast<int>(std::clamp<size_t>((160u << 20) / (state_elems * 4) + 1, 1, 64)) : 1;
  std::vector<DeviceArray<T>> x, B, C, dt, y;
  std::vector<DeviceArray<float>> state;
  DeviceArray<float> A(H), D(H), dt_bias(H);
  fill(A, -16, -1), fill(D, -1, 1), fill(dt_bias, -4, -1);
  for (int i = 0; i < n_sets; ++i) {
    x.emplace_back(size_t(batch) * H * P), B.emplace_back(size_t(batch) * G * N),
        C.emplace_back(size_t(batch) * G * N);
    dt.emplace_back(size_t(batch) * H), y.emplace_back(size_t(batch) * H * P),
        state.emplace_back(state_elems);
    fill(x[i], -1, 1), fill(B[i], -1, 1), fill(C[i], -1, 1), fill(dt[i], -2, 2), fill(state[i], -1, 1);
  }
  auto params = [&](int i) {
    SsdStepParams s;
    s.batch = batch, s.n_heads = H, s.head_dim = P, s.n_groups = G, s.d_state = N;
    s.dtype = std::is_same_v<T, float> ? StepDType::f32 : StepDType::bf16;
    s.x = x[i].ptr, s.x_head_stride = P, s.x_batch_stride = int64_t(H) * P;
    s.dt = dt[i].ptr, s.dt_head_stride = 1, s.dt_batch_stride = H, s.dt_bias = dt_bias.ptr,
    s.dt_softplus = true;
    s.A = A.ptr, s.D = D.ptr;
    s.B = B[i].ptr, s.B_group_stride = N, s.B_batch_stride = int64_t(G) * N;
    s.C = C[i].ptr, s.C_group_stride = N, s.C_batch_stride = int64_t(G) * N;
    s.state = state[i].ptr, s.state_head_stride = int64_t(P) * N, s.state_batch_stride = int64_t(H) * P * N;
    s.y = y[i].ptr, s.y_head_stride = P, s.y_batch_stride = int64_t(H) * P;
    return s;
  };
  const std::string dtype = std::is_same_v<T, float> ? "f32" : "bf16";
  if (!timed) {
    DeviceArray<float> y_ref(y[0].n), state_ref(state_elems);
    ssd_ref_kernel<T, T><<<warp_blocks(int64_t(batch) * H * P), 256>>>(
        batch, 1, H, P, G, N, x[0].ptr, dt[0].ptr, dt_bias.ptr, true, A.ptr, B[0].ptr, C[0].ptr, D.ptr,
        state[0].ptr, y_ref.ptr, state_ref.ptr);
    CUDA_CHECK_LAUNCH();
    y[0].poison();
    ssd_step(params(0), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::string name = "mamba2 step " + dtype + " batch " + std::to_string(batch);
    report_check(name + " y", compare(y[0].to_host(), y_ref.to_host()),
                 std::is_same_v<T, float> ? 1e-5 : 1e-2);
    report_check(name + " state", compare(state[0].to_host(), state_ref.to_host()), 1e-6);
    return;
  }
  const double ms = median_ms([&](int i) { ssd_step(params(i % n_sets), nullptr); }, 50, 5);
  const double bytes = state_elems * 8.0 + batch * (H * P * 2.0 + 2 * G * N + H) * sizeof(T);
  const double target_ms = bytes / (0.9 * timed_copy_tbs * 1e12) * 1e3;
  g_rows.push_back(
      {"Mamba-2 step " + dtype, "batch " + std::to_string(batch), ms, official_ms, target_ms, bytes, 0});
}

void print_table(double copy_tbs) {
  std::printf(
      "\n| kernel | shape | ours (ms) | official (ms) | target (ms) | GB/s | TFLOP/s | byte floor (ms) | "
      "FLOP floor (ms) | %% of roofline |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : g_rows) {
    const double byte_floor = r.bytes / (kCopyTBs * 1e12) * 1e3,
                 flop_floor = r.flops / (kMatmulTFLOPs * 1e12) * 1e3;
    const std::string target = r.target_ms > 0 ? std::to_string(r.target_ms).substr(0, 5) : "-";
    const std::string official = r.official_ms > 0 ? std::to_string(r.official_ms).substr(0, 5) : "-";
    std::printf("| %s | %s | %.3f | %s | %s | %.0f | %.1f | %.3f | %.3f | %.0f%% |\n", r.kernel.c_str(),
                r.shape.c_str(), r.ms, official.c_str(), target.c_str(), r.bytes / (r.ms * 1e-3) / 1e9,
                r.flops / (r.ms * 1e-3) / 1e12, byte_floor, flop_floor,
                100.0 * std::max(byte_floor, flop_floor) / r.ms);
  }
  std::printf(
      "\nmeasured device-to-device copy: %.2f TB/s (read + write); roofline uses %.1f TB/s and %.0f "
      "TFLOP/s\n",
      copy_tbs, kCopyTBs, kMatmulTFLOPs);
}

}  // namespace

int main(int argc, char** argv) {
  bool check_only = false, profile = false, quick = false, small = false;
  for (int i = 1; i < argc; ++i) {
    check_only |= std::strcmp(argv[i], "--check-only") == 0;
    quick |= std::strcmp(argv[i], "--quick") == 0;
    small |= std::strcmp(argv[i], "--small") == 0;
    profile |= std::strcmp(argv[i], "--profile") == 0;
  }
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  if (profile) {  // one launch of each scan at 8x2048 and 1x32768, for ncu
    for (int l : {2048, 32768}) {
      Mamba2Problem m2(std::max(1, 16384 / l), l, kHeads, 1, 256);
      ssd_fast_fwd(m2.params, nullptr);
      Mamba3Problem m3(std::max(1, 16384 / l), l, kHeads);
      mamba3_scan_fast_fwd(m3.params, nullptr);
      Mamba3Problem mimo(std::max(1, 16384 / l), l, kHeads, 4);
      mamba3_scan_fast_fwd(mimo.params, nullptr);
    }
    step_problem<bf16>(128, 0, 3.0);
    CUDA_CHECK(cudaDeviceSynchronize());
    return 0;
  }

  // Correctness: odd shapes (tails, groups, in-place state), then the timed shapes.
  {
    Mamba2Problem grouped(2, 1000, 4, 2, 256);
    grouped.check(false), grouped.check(true);
    Mamba2Problem tiny(3, 77, 4, 1, 128);
    tiny.check(false);
    Mamba3Problem m3(2, 1000, 4);
    m3.check(false), m3.check(true);
    Mamba3Problem m3_tiny(3, 1, 4);
    m3_tiny.check(false);
    for (int rank : {2, 4}) {  // odd lengths: partial chunks; 4 heads: short state chunks
      Mamba3Problem mimo(2, 999, 4, rank);
      mimo.check(false), mimo.check(true);
      Mamba3Problem mimo_tiny(3, 1, 4, rank);
      mimo_tiny.check(false);
    }
    for (int b : {1, 16, 128}) step_problem<bf16>(b, 0, 0);
    step_problem<float>(16, 0, 0);
  }
  if (small) {
    std::printf("\n%s (%d failed checks)\n", g_failures ? "FAILED" : "all checks passed", g_failures);
    return g_failures ? 1 : 0;
  }
  const double copy_tbs = measure_copy_tbs();
  struct Shape {
    int batch, seq_len;
    double m2_official, m2_target, m3_official, m3_target;
  };
  const Shape shapes[] = {
      {8, 2048, 0.52, 0.45, 0.76, 0.5}, {2, 8192, 1.10, 0.9, 1.84, 1.2}, {1, 32768, 0.89, 0.75, 6.95, 1.5}};
  for (const Shape& sh : shapes) {
    Mamba2Problem m2(sh.batch, sh.seq_len, kHeads, 1, 256);
    if (!quick) m2.check(false);
    if (!check_only) m2.time(sh.m2_official, sh.m2_target);
  }
  for (const Shape& sh : shapes) {
    Mamba3Problem m3(sh.batch, sh.seq_len, kHeads);
    if (!quick) m3.check(false);
    if (!check_only) m3.time(sh.m3_official, sh.m3_target);
  }
  for (const Shape& sh : shapes) {  // MIMO rank 4, chunk 16 tokens: no official or target times here
    Mamba3Problem mimo(sh.batch, sh.seq_len, kHeads, 4);
    if (!quick) mimo.check(false);
    if (check_only) continue;
    mimo.time(0, 0);
    for (int state_chunk : {64, 128, 512}) mimo.time(0, 0, state_chunk);
  }
  if (!check_only) {
    const double official[] = {0.088, 0.080, 0.101};
    const int batches[] = {1, 16, 128};
    for (int i = 0; i < 3; ++i) step_problem<bf16>(batches[i], official[i], copy_tbs);
    print_table(copy_tbs);
  }
  std::printf("\n%s (%d failed checks)\n", g_failures ? "FAILED" : "all checks passed", g_failures);
  return g_failures ? 1 : 0;
}
