// SSD on CUDA. Dispatch: one token -> ssd_step (fp32, exact); a sequence with args.fast_bf16 at a
// compiled shape -> the tensor-core chunked scan (ssd_fast.cu, bf16 x/B/C/y, fp32 state); else the
// simple scan below: one warp per (batch, head, pair of head_dim rows), lane l holding state entries
// n = l, l+32, ... (d_state <= 256) of both rows in registers, y_t[p] a warp sum.
#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/kernels.h"
#include "ops/ssd/ssd.h"
#include "ops/ssd/ssd_fast.cuh"
#include "ops/ssd/ssd_step.cuh"

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

bool aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0;
}

const __nv_bfloat16* bf16_ptr(const Tensor& t) {
  return static_cast<const __nv_bfloat16*>(t.raw());
}

// Tensor-core chunked scan: x, B, C rounded to bf16 on the way in (bf16 ones taken as they are), y
// (bf16) widened to f32 on the way out unless bf16_out; the state is read and written in fp32, in place.
Tensor ssd_fast_path(const SsdArgs& a, Tensor& state) {
  const int64_t L = a.x.size(1), H = a.x.size(2), P = a.x.size(3), G = a.B.size(2), N = a.B.size(3);
  const Tensor x = a.x.to(DType::bf16), B = a.B.to(DType::bf16), C = a.C.to(DType::bf16);
  Tensor y = Tensor::empty(a.x.shape(), DType::bf16, Device::cuda);  // [batch, seq_len, n_heads, head_dim]
  cuda::SsdFastParams p;
  p.batch = static_cast<int>(a.x.size(0)), p.seq_len = static_cast<int>(L), p.n_heads = static_cast<int>(H);
  p.head_dim = static_cast<int>(P), p.n_groups = static_cast<int>(G), p.d_state = static_cast<int>(N);
  p.chunk_size = 256;
  p.x = bf16_ptr(x), p.x_batch_stride = L * H * P, p.x_seq_stride = H * P, p.x_head_stride = P;
  p.dt = a.dt.f32(), p.dt_batch_stride = L * H, p.dt_seq_stride = H, p.dt_head_stride = 1;
  p.A = a.A.f32(), p.D = a.D.f32();
  p.B = bf16_ptr(B), p.B_batch_stride = L * G * N, p.B_seq_stride = G * N, p.B_group_stride = N;
  p.C = bf16_ptr(C), p.C_batch_stride = L * G * N, p.C_seq_stride = G * N, p.C_group_stride = N;
  p.initial_state = state.f32(), p.final_state = state.f32();
  p.initial_state_batch_stride = p.final_state_batch_stride = H * P * N;
  p.initial_state_head_stride = p.final_state_head_stride = P * N;
  p.y = static_cast<__nv_bfloat16*>(y.raw()), p.y_batch_stride = L * H * P, p.y_seq_stride = H * P,
  p.y_head_stride = P;
  p.workspace_bytes = cuda::ssd_fast_workspace_bytes(p);
  const Tensor workspace = Tensor::empty({static_cast<int64_t>(p.workspace_bytes)}, DType::u8, Device::cuda);
  p.workspace = workspace.raw();
  cuda::ssd_fast_fwd(p, mamba::cuda::stream());
  return a.bf16_out ? y : y.to(DType::f32);
}

// One token (SPEC §2.4): the memory-bound fp32 state update of ssd_step.cu.
Tensor ssd_step_path(const SsdArgs& a, Tensor& state) {
  const int64_t H = a.x.size(2), P = a.x.size(3), G = a.B.size(2), N = a.B.size(3);
  Tensor y = Tensor::empty(a.x.shape(), DType::f32, Device::cuda);  // [batch, 1, n_heads, head_dim]
  cuda::SsdStepParams p;
  p.batch = static_cast<int>(a.x.size(0)), p.n_heads = static_cast<int>(H), p.head_dim = static_cast<int>(P);
  p.n_groups = static_cast<int>(G), p.d_state = static_cast<int>(N), p.dtype = cuda::StepDType::f32;
  p.x = a.x.f32(), p.x_batch_stride = H * P, p.x_head_stride = P;
  p.dt = a.dt.f32(), p.dt_batch_stride = a.dt.stride(0), p.dt_head_stride = a.dt.stride(2);
  if (a.dt_bias.defined()) {  // raw dt: Δ = clamp(softplus(dt + dt_bias)) in the step
    p.dt_bias = a.dt_bias.f32(), p.dt_softplus = true;
    p.dt_clamp = true, p.dt_lo = a.dt_lo, p.dt_hi = a.dt_hi;
  }
  p.A = a.A.f32(), p.D = a.D.f32();
  p.B = a.B.f32(), p.B_batch_stride = G * N, p.B_group_stride = N;
  p.C = a.C.f32(), p.C_batch_stride = G * N, p.C_group_stride = N;
  p.state = state.f32(), p.state_batch_stride = H * P * N, p.state_head_stride = P * N;
  p.y = y.f32(), p.y_batch_stride = H * P, p.y_head_stride = P;
  cuda::ssd_step(p, mamba::cuda::stream());
  return y;
}

}  // namespace

Tensor ssd_scan_cuda(const SsdArgs& a, Tensor& state) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&a.x, &a.dt, &a.A, &a.B, &a.C, &a.D, &state})
    mamba::cuda::check_cuda_tensor(*t, "ssd argument");
  const int64_t batch = a.x.size(0), seq_len = a.x.size(1), H = a.x.size(2), P = a.x.size(3);
  const int64_t G = a.B.size(2), N = a.B.size(3);
  const bool raw_dt = a.dt_bias.defined();  // SsdArgs::dt_bias: dt is the raw projection (rows strided)
  if (raw_dt) mamba::cuda::check_cuda_tensor(a.dt_bias, "ssd dt_bias");
  MAMBA_CHECK(a.x.is_contiguous() && a.B.is_contiguous() && a.C.is_contiguous() &&
              (raw_dt ? a.dt.dim() == 3 && a.dt.stride(2) == 1 : a.dt.is_contiguous()));
  MAMBA_CHECK(a.B.shape() == a.C.shape() && H % G == 0 && a.dt.shape() == (Shape{batch, seq_len, H}));
  MAMBA_CHECK(!raw_dt || (a.dt_bias.is_contiguous() && a.dt_bias.numel() == H),
              "ssd: dt_bias " << shape_str(a.dt_bias.shape()) << " must be [n_heads]");
  MAMBA_CHECK(state.is_contiguous() && state.shape() == (Shape{batch, H, P, N}));
  MAMBA_CHECK(N <= 32 * kMaxSlots, "ssd (CUDA): d_state " << N << " > " << 32 * kMaxSlots);
  const bool d_per_channel = a.D.numel() == H * P;
  MAMBA_CHECK(d_per_channel || a.D.numel() == H);
  if (batch == 0 || seq_len == 0) return Tensor::empty(a.x.shape(), DType::f32, Device::cuda);
  // Both fast kernels take D per head and 4-element-aligned B/C/state rows.
  const bool vec_ok = !d_per_channel && N % 4 == 0 && aligned16(a.B) && aligned16(a.C) && aligned16(state);
  if (seq_len == 1 && vec_ok) return ssd_step_path(a, state);
  if (raw_dt) {  // the scans take Δ: the op the model would have run, then the scan
    SsdArgs d = a;
    d.dt = cuda_kernels().elementwise.softplus_bias_clamp(a.dt, a.dt_bias, a.dt_lo, a.dt_hi);
    d.dt_bias = Tensor();
    return ssd_scan_cuda(d, state);
  }
  if (a.fast_bf16 && vec_ok && P == 64 && N == 128) return ssd_fast_path(a, state);
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
