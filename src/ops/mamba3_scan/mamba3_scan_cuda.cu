// Mamba-3 scan on CUDA (SPEC §3.4). A sequence with args.fast_bf16 at a compiled shape (SISO, or MIMO
// rank 2 or 4) runs the tensor-core chunked scan (mamba3_scan_fast.cu: bf16 x/q/k/y, fp32 state and
// mimo_x; bf16 x/q/k from bf16_operands are read as they are). Else the simple scan (bf16 operands
// widened to f32 first):
// one warp per (batch, head, tile of head_dim rows), lane l holding state entries n = l, l+32, ...
// (d_state <= 256) in registers, each rank's S·q_r a warp sum; k_prev/v_prev saved by a second launch.
// The tile is 2 rows at d_state over 128, up to 16 rows at d_state 32 and below.
#include <cuda_bf16.h>

#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/kernels.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/mamba3_scan/mamba3_scan_fast.cuh"

namespace mamba::ops {

namespace {

constexpr int kMaxSlots = 8;  // state entries per lane and row: d_state <= 32·kMaxSlots
constexpr int kWarps = 4;     // warps per block

struct Mamba3Params {
  const float *x, *q, *k, *adt, *dt, *trap, *D, *mimo_x;  // mimo_x null for SISO
  float *y, *ssm, *k_prev, *v_prev;
  int64_t batch, seq_len, rank, n_heads, head_dim, d_state;
};

// kSlots state entries per lane and row (d_state <= 32·kSlots), kRows head_dim rows per warp: the
// narrower layouts for small d_state keep the same 16 state values per lane, so a warp covers
// more rows and the per-token loads of q, k and the scalars (and their index arithmetic) are
// shared by more of them (2 rows × 8 slots at d_state 64 was 32 warps per (batch, head), each
// re-reading q and k, three quarters of its slots zero). Each state entry and y row sees the same
// operations in the same order whatever the layout (a missing slot only added 0·0 terms).
template <int kSlots, int kRows>
__global__ void __launch_bounds__(32 * kWarps) mamba3_scan_kernel(Mamba3Params p) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  const int64_t row_tiles = (p.head_dim + kRows - 1) / kRows;
  if (warp >= p.batch * p.n_heads * row_tiles) return;
  const int64_t p0 = (warp % row_tiles) * kRows, bh = warp / row_tiles;
  const int64_t b = bh / p.n_heads, h = bh % p.n_heads;
  const int64_t R = p.rank, H = p.n_heads, P = p.head_dim, N = p.d_state, L = p.seq_len;
  float s[kRows][kSlots];
#pragma unroll
  for (int i = 0; i < kRows; ++i)
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      const int64_t n = lane + 32 * j, row = p0 + i;
      s[i][j] = (n < N && row < P) ? p.ssm[(bh * P + row) * N + n] : 0.0f;
    }
  const float D = p.D[h];
  for (int64_t t = 0; t < L; ++t) {
    const int64_t bt = b * L + t;
    const float dt = p.dt[bt * H + h], lambda = p.trap[bt * H + h];
    const float alpha = expf(p.adt[bt * H + h]);
    const float beta = (1.0f - lambda) * dt * alpha, gamma = lambda * dt;
    float x_now[kRows], x_before[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      const int64_t row = p0 + i < P ? p0 + i : P - 1;
      x_now[i] = p.x[(bt * H + h) * P + row];
      x_before[i] = t == 0 ? p.v_prev[bh * P + row] : p.x[((bt - 1) * H + h) * P + row];
    }
    // S = α·S + Σ_r (β·v_{t−1,r}[p]·k_{t−1,r} + γ·v_{t,r}[p]·k_{t,r}),  v_{t,r} = x_t ⊙ mimo_x[h, r].
#pragma unroll
    for (int i = 0; i < kRows; ++i)
#pragma unroll
      for (int j = 0; j < kSlots; ++j) s[i][j] *= alpha;
    for (int64_t r = 0; r < R; ++r) {
      const float* k_before =
          t == 0 ? p.k_prev + ((b * R + r) * H + h) * N : p.k + (((bt - 1) * R + r) * H + h) * N;
      const float* k_now = p.k + ((bt * R + r) * H + h) * N;
      float kb[kSlots], kn[kSlots];
#pragma unroll
      for (int j = 0; j < kSlots; ++j) {
        const int64_t n = lane + 32 * j;
        kb[j] = n < N ? k_before[n] : 0.0f;
        kn[j] = n < N ? k_now[n] : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        const int64_t row = p0 + i < P ? p0 + i : P - 1;
        const float scale = p.mimo_x ? p.mimo_x[(h * R + r) * P + row] : 1.0f;
        const float c_before = beta * x_before[i] * scale, c_now = gamma * x_now[i] * scale;
#pragma unroll
        for (int j = 0; j < kSlots; ++j) s[i][j] += c_before * kb[j] + c_now * kn[j];
      }
    }
    // y_{t,r}[p] = S_p·q_{t,r} + D·v_{t,r}[p].
    for (int64_t r = 0; r < R; ++r) {
      const float* q = p.q + ((bt * R + r) * H + h) * N;
      float qn[kSlots];
#pragma unroll
      for (int j = 0; j < kSlots; ++j) qn[j] = lane + 32 * j < N ? q[lane + 32 * j] : 0.0f;
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        const int64_t row = p0 + i;
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < kSlots; ++j) acc += s[i][j] * qn[j];
        acc = mamba::cuda::warp_sum(acc);
        if (lane == 0 && row < P) {
          const float scale = p.mimo_x ? p.mimo_x[(h * R + r) * P + row] : 1.0f;
          p.y[((bt * R + r) * H + h) * P + row] = acc + D * x_now[i] * scale;
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRows; ++i)
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      const int64_t n = lane + 32 * j, row = p0 + i;
      if (n < N && row < P) p.ssm[(bh * P + row) * N + n] = s[i][j];
    }
}

// SISO with d_state <= kN (16, 32 or 64): lane l of a warp holds head_dim row p0 + l, all its
// state entries in registers, so y_p = S_p·q is the thread's own sum (no shuffles) and the warp's
// loads of x and y are one row each. The token's k and q go through the warp's shared memory
// (read back as broadcasts), loaded with the scalars and x one token ahead; k_{t−1} is the
// previous token's k. Each state entry sees the operations of mamba3_scan_kernel in its order
// (the same bits); y sums over n in order instead of a warp butterfly (rounding only).
template <int kN>
__global__ void __launch_bounds__(32 * kWarps) mamba3_scan_rows_kernel(Mamba3Params p) {
  __shared__ __align__(16) float sh[kWarps][3][kN];  // per warp: two k buffers (now, before) and q
  const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
  const int64_t warp = blockIdx.x * int64_t(kWarps) + wib;
  const int64_t H = p.n_heads, P = p.head_dim, N = p.d_state, L = p.seq_len;
  const int64_t row_tiles = (P + 31) / 32;
  if (warp >= p.batch * H * row_tiles) return;  // whole warps leave; the rest only sync per warp
  const int64_t bh = warp / row_tiles, b = bh / H, h = bh % H, row = (warp % row_tiles) * 32 + lane;
  const bool active = row < P;
  const int64_t prow = active ? row : P - 1;  // an idle lane reads a valid row and stores nothing
  constexpr int kPer = (kN + 31) / 32;        // k / q entries a lane loads per token
  float(*buf)[kN] = sh[wib];
  for (int n = lane; n < kN; n += 32) {  // entries past d_state stay 0 in every buffer
    buf[0][n] = 0.0f;
    buf[1][n] = n < N ? p.k_prev[bh * N + n] : 0.0f;
    buf[2][n] = 0.0f;
  }
  float s[kN];
#pragma unroll
  for (int n = 0; n < kN; ++n) s[n] = n < N ? p.ssm[(bh * P + prow) * N + n] : 0.0f;
  const float D = p.D[h];
  float x_before = p.v_prev[bh * P + prow];
  float k_next[kPer], q_next[kPer], dt_next, lambda_next, adt_next, x_next;  // token t's, loaded during t − 1
  auto load_next = [&](int64_t t) {
    const int64_t bt = b * L + t;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int64_t n = lane + 32 * j, at = (bt * H + h) * N + n;
      k_next[j] = n < N ? p.k[at] : 0.0f;
      q_next[j] = n < N ? p.q[at] : 0.0f;
    }
    dt_next = p.dt[bt * H + h];
    lambda_next = p.trap[bt * H + h];
    adt_next = p.adt[bt * H + h];
    x_next = p.x[(bt * H + h) * P + prow];
  };
  load_next(0);
  int now = 0;  // buf[now]: k_t; buf[1 − now]: k_{t−1}
  for (int64_t t = 0; t < L; ++t) {
    const int64_t bt = b * L + t;
    __syncwarp();  // the previous token's reads of buf[now] (its k_{t−1}) and q are done
#pragma unroll
    for (int j = 0; j < kPer; ++j)
      if (lane + 32 * j < kN) {
        buf[now][lane + 32 * j] = k_next[j];
        buf[2][lane + 32 * j] = q_next[j];
      }
    __syncwarp();
    const float dt = dt_next, lambda = lambda_next, alpha = expf(adt_next), x_now = x_next;
    if (t + 1 < L) load_next(t + 1);
    const float beta = (1.0f - lambda) * dt * alpha, gamma = lambda * dt;
    const float c_before = beta * x_before, c_now = gamma * x_now;
    const float* kn = buf[now];
    const float* kb = buf[1 - now];
    const float* q = buf[2];
    float acc = 0.0f;
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      s[n] *= alpha;
      s[n] += c_before * kb[n] + c_now * kn[n];
      acc += s[n] * q[n];
    }
    if (active) p.y[(bt * H + h) * P + row] = acc + D * x_now;
    x_before = x_now;
    now = 1 - now;
  }
  if (!active) return;
#pragma unroll
  for (int n = 0; n < kN; ++n)
    if (n < N) p.ssm[(bh * P + row) * N + n] = s[n];
}

// k_prev[b, r, h, :] = k[b, L−1, r, h, :];  v_prev[b, h, :] = x[b, L−1, h, :]  (SPEC §3.5).
__global__ void mamba3_save_last_kernel(Mamba3Params p) {
  const int64_t R = p.rank, H = p.n_heads, P = p.head_dim, N = p.d_state, L = p.seq_len;
  const int64_t n_k = p.batch * R * H * N;
  MAMBA_GRID_STRIDE_LOOP(i, n_k + p.batch * H * P) {
    if (i < n_k) {
      const int64_t b = i / (R * H * N), rhn = i % (R * H * N);
      p.k_prev[i] = p.k[(b * L + L - 1) * R * H * N + rhn];
    } else {
      const int64_t j = i - n_k, b = j / (H * P), hp = j % (H * P);
      p.v_prev[j] = p.x[(b * L + L - 1) * H * P + hp];
    }
  }
}

const __nv_bfloat16* bf16_ptr(const Tensor& t) {
  return static_cast<const __nv_bfloat16*>(t.raw());
}

// Tensor-core chunked scan (SISO, or MIMO with mimo_x): x, q, k rounded to bf16 on the way in (used
// as they are when already bf16: bf16_operands), y (bf16) widened into the caller's f32 y; ssm,
// k_prev and v_prev are read and written in fp32, in place. Contiguous [batch, seq_len, R,
// n_heads, ·] q, k, y and [batch, R, n_heads, d_state] k_prev.
void mamba3_fast_path(const Mamba3ScanArgs& a, Mamba3ScanState& s, Tensor& y) {
  const int64_t L = a.x.size(1), R = a.q.size(2), H = a.x.size(2), P = a.x.size(3), N = a.q.size(4);
  const Tensor x = a.x.to(DType::bf16), q = a.q.to(DType::bf16), k = a.k.to(DType::bf16);
  const Tensor mimo_x = R > 1 ? a.mimo_x.contiguous() : Tensor();  // [n_heads, R, head_dim]
  // [batch, seq_len, R, n_heads, head_dim]; a bf16 y is written directly (no conversion pass).
  Tensor y_bf16 = y.dtype() == DType::bf16 ? y : Tensor::empty(y.shape(), DType::bf16, Device::cuda);
  cuda::Mamba3ScanFastParams p;
  p.batch = static_cast<int>(a.x.size(0)), p.seq_len = static_cast<int>(L), p.n_heads = static_cast<int>(H);
  p.head_dim = static_cast<int>(P), p.d_state = static_cast<int>(N);
  p.mimo_rank = static_cast<int>(R), p.chunk_size = static_cast<int>(64 / R);
  p.x = bf16_ptr(x), p.x_batch_stride = L * H * P, p.x_seq_stride = H * P, p.x_head_stride = P;
  p.q = bf16_ptr(q), p.q_batch_stride = L * R * H * N, p.q_seq_stride = R * H * N, p.q_head_stride = N;
  p.k = bf16_ptr(k), p.k_batch_stride = L * R * H * N, p.k_seq_stride = R * H * N, p.k_head_stride = N;
  p.q_rank_stride = p.k_rank_stride = H * N;
  if (R > 1) p.mimo_x = mimo_x.f32(), p.mimo_x_head_stride = R * P, p.mimo_x_rank_stride = P;
  p.adt = a.adt.f32(), p.dt = a.dt.f32(), p.trap = a.trap.f32(), p.D = a.D.f32();
  p.dt_batch_stride = L * H, p.dt_seq_stride = H, p.dt_head_stride = 1;
  p.ssm_in = p.ssm_out = s.ssm.f32(), p.ssm_batch_stride = H * P * N, p.ssm_head_stride = P * N;
  p.k_prev_in = p.k_prev_out = s.k_prev.f32(), p.k_prev_batch_stride = R * H * N, p.k_prev_head_stride = N;
  p.k_prev_rank_stride = H * N;
  p.v_prev_in = p.v_prev_out = s.v_prev.f32(), p.v_prev_batch_stride = H * P, p.v_prev_head_stride = P;
  p.y = static_cast<__nv_bfloat16*>(y_bf16.raw());
  p.y_batch_stride = L * R * H * P, p.y_seq_stride = R * H * P, p.y_head_stride = P, p.y_rank_stride = H * P;
  p.workspace_bytes = cuda::mamba3_scan_fast_workspace_bytes(p);
  const Tensor workspace = Tensor::empty({static_cast<int64_t>(p.workspace_bytes)}, DType::u8, Device::cuda);
  p.workspace = workspace.raw();
  cuda::mamba3_scan_fast_fwd(p, mamba::cuda::stream());
  if (y_bf16.raw() != y.raw()) y.copy_from(y_bf16);
}

}  // namespace

namespace {

// widest: the simple scan's 8-slot layout whatever d_state (the tests' reference for the others).
void mamba3_scan_impl(const Mamba3ScanArgs& a, Mamba3ScanState& s, Tensor& y, bool widest) {
  MAMBA_CHECK(a.x.dim() == 4 && a.q.dim() == 5, "mamba3_scan: x must be [batch, seq_len, n_heads, head_dim]");
  const int64_t B = a.x.size(0), L = a.x.size(1), H = a.x.size(2), P = a.x.size(3), R = a.q.size(2),
                N = a.q.size(4);
  MAMBA_CHECK(L >= 1, "mamba3_scan: seq_len " << L);
  MAMBA_CHECK(a.q.shape() == (Shape{B, L, R, H, N}) && a.k.shape() == a.q.shape(),
              "q " << shape_str(a.q.shape()) << " and k " << shape_str(a.k.shape()) << " with x "
                   << shape_str(a.x.shape()));
  for (const Tensor* t : std::initializer_list<const Tensor*>{&a.adt, &a.dt, &a.trap})
    MAMBA_CHECK(t->shape() == (Shape{B, L, H}));
  MAMBA_CHECK(a.D.numel() == H && (a.mimo_x.defined() ? a.mimo_x.shape() == (Shape{H, R, P}) : R == 1));
  MAMBA_CHECK(s.ssm.shape() == (Shape{B, H, P, N}) && s.k_prev.shape() == (Shape{B, R, H, N}) &&
              s.v_prev.shape() == (Shape{B, H, P}));
  MAMBA_CHECK(N <= 32 * kMaxSlots, "mamba3_scan (CUDA): d_state " << N << " > " << 32 * kMaxSlots);
  if (!y.defined()) y = Tensor::empty({B, L, R, H, P}, DType::f32, Device::cuda);
  MAMBA_CHECK(y.shape() == (Shape{B, L, R, H, P}));
  for (const Tensor* t : std::initializer_list<const Tensor*>{&a.x, &a.q, &a.k, &a.adt, &a.dt, &a.trap, &a.D,
                                                              &s.ssm, &s.k_prev, &s.v_prev, &y}) {
    mamba::cuda::check_cuda_tensor(*t, "mamba3_scan argument");
    // x, q and k may be bf16 (bf16_operands: the prepare's output for the tensor-core scan), and y
    // (written by the tensor-core scan without a conversion pass).
    const bool operand = t == &a.x || t == &a.q || t == &a.k || t == &y;
    MAMBA_CHECK((t->dtype() == DType::f32 || (operand && t->dtype() == DType::bf16)) && t->is_contiguous(),
                "mamba3_scan: tensors must be contiguous and f32 (x, q, k: f32 or bf16)");
  }
  if (a.mimo_x.defined()) mamba::cuda::check_cuda_tensor(a.mimo_x, "mamba3_scan: mimo_x");
  if (a.fast_bf16 && mamba3_scan_fast_bf16_applies(L, R, a.mimo_x.defined(), P, N) && B > 0)
    return mamba3_fast_path(a, s, y);
  MAMBA_CHECK(y.dtype() == DType::f32, "mamba3_scan: a bf16 y needs the tensor-core scan (fast_bf16)");
  // The simple kernel reads f32: widen bf16 operands (exact), so every path stays correct.
  Mamba3ScanArgs wide;
  const bool has_bf16 =
      a.x.dtype() == DType::bf16 || a.q.dtype() == DType::bf16 || a.k.dtype() == DType::bf16;
  if (has_bf16) {
    wide = a;
    for (Tensor* t : {&wide.x, &wide.q, &wide.k}) *t = t->to(DType::f32);
  }
  const Mamba3ScanArgs& f = has_bf16 ? wide : a;
  const Mamba3Params p{f.x.f32(),
                       f.q.f32(),
                       f.k.f32(),
                       f.adt.f32(),
                       f.dt.f32(),
                       f.trap.f32(),
                       f.D.f32(),
                       f.mimo_x.defined() ? f.mimo_x.f32() : nullptr,
                       y.f32(),
                       s.ssm.f32(),
                       s.k_prev.f32(),
                       s.v_prev.f32(),
                       B,
                       L,
                       R,
                       H,
                       P,
                       N};
  if (B * H * P == 0) return;
  auto launch = [&](auto kernel, int rows) {
    const int64_t warps = B * H * ((P + rows - 1) / rows);
    kernel<<<mamba::cuda::ceil_div(warps, kWarps), 32 * kWarps, 0, mamba::cuda::stream()>>>(p);
  };
  if (!widest && !f.mimo_x.defined() && N <= 64) {  // SISO
    const int64_t warps = B * H * ((P + 31) / 32);
    const unsigned int blocks = mamba::cuda::ceil_div(warps, kWarps);
    if (N > 32)
      mamba3_scan_rows_kernel<64><<<blocks, 32 * kWarps, 0, mamba::cuda::stream()>>>(p);
    else if (N > 16)
      mamba3_scan_rows_kernel<32><<<blocks, 32 * kWarps, 0, mamba::cuda::stream()>>>(p);
    else
      mamba3_scan_rows_kernel<16><<<blocks, 32 * kWarps, 0, mamba::cuda::stream()>>>(p);
  } else if (widest || N > 128)
    launch(mamba3_scan_kernel<8, 2>, 2);
  else if (N > 64)
    launch(mamba3_scan_kernel<4, 4>, 4);
  else if (N > 32)
    launch(mamba3_scan_kernel<2, 8>, 8);
  else
    launch(mamba3_scan_kernel<1, 16>, 16);
  CUDA_CHECK_LAUNCH();
  mamba3_save_last_kernel<<<mamba::cuda::grid_for(B * (R * H * N + H * P)), 256, 0, mamba::cuda::stream()>>>(
      p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void mamba3_scan_cuda(const Mamba3ScanArgs& a, Mamba3ScanState& s, Tensor& y) {
  mamba3_scan_impl(a, s, y, false);
}

void mamba3_scan_wide_cuda(const Mamba3ScanArgs& a, Mamba3ScanState& s, Tensor& y) {
  mamba3_scan_impl(a, s, y, true);
}

}  // namespace mamba::ops
