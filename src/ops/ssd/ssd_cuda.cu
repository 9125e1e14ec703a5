// Simple SSD scan on CUDA (the definition of ssd.h, token by token): one warp per (batch, head,
// pair of head_dim rows); lane l holds state entries n = l, l+32, ... (d_state <= 256) of both
// rows in registers, and y_t[p] is a warp sum. No shared memory, no block synchronization.
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/ssd/ssd_cuda.h"

namespace mamba::ops {

namespace {

constexpr int kRows = 2;      // head_dim rows per warp
constexpr int kMaxSlots = 8;  // state entries per lane and row: d_state <= 32·kMaxSlots
constexpr int kWarps = 4;     // warps per block

struct SsdParams {
  const float *x, *dt, *A, *B, *C, *D;
  float *y, *state;
  int64_t batch, seq_len, n_heads, head_dim, n_groups, d_state;
  bool d_per_channel;
};

// h_t[p,n] = exp(dt_t·A_h)·h_{t−1}[p,n] + dt_t·x_t[p]·B_t[g,n];  y_t[p] = Σ_n C_t[g,n]·h_t[p,n] + D·x_t[p].
__global__ void ssd_scan_kernel(SsdParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  const int64_t row_tiles = (p.head_dim + kRows - 1) / kRows;
  if (warp >= p.batch * p.n_heads * row_tiles) return;
  const int64_t p0 = (warp % row_tiles) * kRows, bh = warp / row_tiles;
  const int64_t b = bh / p.n_heads, h = bh % p.n_heads, g = h / (p.n_heads / p.n_groups);
  const int64_t P = p.head_dim, N = p.d_state, H = p.n_heads;
  float s[kRows][kMaxSlots];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int j = 0; j < kMaxSlots; ++j) {
      const int64_t n = lane + 32 * j, row = p0 + r;
      s[r][j] = (n < N && row < P) ? p.state[(bh * P + row) * N + n] : 0.0f;
    }
  const float A = p.A[h];
  for (int64_t t = 0; t < p.seq_len; ++t) {
    const int64_t bt = b * p.seq_len + t;
    const float dt = p.dt[bt * H + h], decay = expf(dt * A);
    const float* Bt = p.B + (bt * p.n_groups + g) * N;
    const float* Ct = p.C + (bt * p.n_groups + g) * N;
    float Bn[kMaxSlots], Cn[kMaxSlots];
#pragma unroll
    for (int j = 0; j < kMaxSlots; ++j) {
      const int64_t n = lane + 32 * j;
      Bn[j] = n < N ? Bt[n] : 0.0f;
      Cn[j] = n < N ? Ct[n] : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = p0 + r;
      if (row >= P) break;
      const float xv = p.x[(bt * H + h) * P + row], dx = dt * xv;
      float acc = 0.0f;
#pragma unroll
      for (int j = 0; j < kMaxSlots; ++j) {
        s[r][j] = decay * s[r][j] + dx * Bn[j];
        acc += Cn[j] * s[r][j];
      }
      acc = mamba::cuda::warp_sum(acc);
      if (lane == 0) p.y[(bt * H + h) * P + row] = acc + (p.d_per_channel ? p.D[h * P + row] : p.D[h]) * xv;
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int j = 0; j < kMaxSlots; ++j) {
      const int64_t n = lane + 32 * j, row = p0 + r;
      if (n < N && row < P) p.state[(bh * P + row) * N + n] = s[r][j];
    }
}

}  // namespace

Tensor ssd_scan_cuda(const SsdArgs& a, Tensor& state) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&a.x, &a.dt, &a.A, &a.B, &a.C, &a.D, &state})
    mamba::cuda::check_cuda_tensor(*t, "ssd argument");
  const int64_t batch = a.x.size(0), seq_len = a.x.size(1), H = a.x.size(2), P = a.x.size(3);
  const int64_t G = a.B.size(2), N = a.B.size(3);
  MAMBA_CHECK(a.x.is_contiguous() && a.B.is_contiguous() && a.C.is_contiguous() && a.dt.is_contiguous());
  MAMBA_CHECK(a.B.shape() == a.C.shape() && H % G == 0 && a.dt.shape() == (Shape{batch, seq_len, H}));
  MAMBA_CHECK(state.is_contiguous() && state.shape() == (Shape{batch, H, P, N}));
  MAMBA_CHECK(N <= 32 * kMaxSlots, "ssd (CUDA): d_state " << N << " > " << 32 * kMaxSlots);
  const bool d_per_channel = a.D.numel() == H * P;
  MAMBA_CHECK(d_per_channel || a.D.numel() == H);
  Tensor y = Tensor::empty(a.x.shape(), DType::f32, Device::cuda);
  const int64_t warps = batch * H * ((P + kRows - 1) / kRows);
  if (y.numel() == 0 || warps == 0) return y;
  const SsdParams p{a.x.f32(), a.dt.f32(), a.A.f32(),   a.B.f32(), a.C.f32(),
                    a.D.f32(), y.f32(),    state.f32(), batch,     seq_len,
                    H,         P,          G,           N,         d_per_channel};
  ssd_scan_kernel<<<mamba::cuda::ceil_div(warps, kWarps), 32 * kWarps, 0, mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace mamba::ops
