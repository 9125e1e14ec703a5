// Backward of SSD on CUDA (training): same contract and fp32 math as ssd_bwd (ssd_bwd.cpp), whole
// sequence from a zero state. Parallel over chunks of kChunk tokens through chunk-boundary states,
// like the chunked forward's state passing:
//   1. ssd_bwd_local: per chunk, the state at its end from a zero entry state (forward), the
//      gradient at its start from a zero gradient at its end (reverse), and its total decay.
//   2. ssd_bwd_pass: per state entry, a sequential pass over the chunks turning these into the state
//      entering each chunk and the gradient arriving at each chunk's end from the later chunks.
//   3. ssd_bwd_main: per chunk, the forward again from the entry state (dC, dD, dy·ỹ), then the
//      reverse recurrence from the arriving gradient (dx, dB); ddt and dA need Σ dS_t⊙S_{t−1}, which
//      would need the per-token states in reverse order; instead r_t = α_t·Σ dS_t⊙S_{t−1} is found
//      from the identity r_t = dy_t·ỹ_t − dt_t·x_t·(dS_t·B_t) + r_{t+1} (ỹ_t = S_t·C_t, y without D),
//      a reverse cumulative sum over the chunk seeded with the exact boundary term
//      r_{end+1} = Σ dS_arriving⊙S_end, so cancellation spans at most one chunk.
// A block per (batch·head, chunk, tile of head_dim rows): warp w holds R rows, lane l the state
// entries n = l + 32j (j < SLOTS) of them in registers. B and C are shared by the rows and by the
// heads of a group: their gradients are summed over the block's rows in shared memory, kSub
// tokens at a time, then added to the (zeroed) outputs with atomics, as are ddt, dA and dD.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/ssd/ssd.h"

namespace mamba::ops {

namespace {

constexpr int kChunk = 256;    // tokens per chunk (the math is the same for any size, up to rounding)
constexpr int kSub = 32;       // tokens per flush of the shared dB/dC sums
constexpr int kMaxWarps = 16;  // warps per block

struct BwdParams {
  const float *x, *dt, *A, *B, *C, *D, *dy;
  float *dx, *ddt, *dA, *dB, *dC, *dD;
  float *S_chunk, *dS_chunk;  // [batch·n_heads, n_chunks, head_dim, d_state]
  float* decay;               // [batch·n_heads, n_chunks]  Π α_t over the chunk
  int64_t batch, L, H, P, G, N, n_chunks;
  bool d_per_channel;
};

// This block's work: head, group, token range and the first row of the calling warp.
struct Work {
  int64_t bh, b, h, g, c, t0, t1, row0;
};

template <int R>
__device__ Work block_work(const BwdParams& p) {
  Work w;
  w.bh = blockIdx.x, w.c = blockIdx.y;
  w.b = w.bh / p.H, w.h = w.bh % p.H, w.g = w.h / (p.H / p.G);
  w.t0 = w.c * kChunk, w.t1 = min(p.L, w.t0 + kChunk);
  const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5;
  w.row0 = (int64_t(blockIdx.z) * warps + warp) * R;
  return w;
}

template <int SLOTS>
__device__ __forceinline__ void load_state_row(const float* v, int64_t N, float (&out)[SLOTS]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < SLOTS; ++j) {
    const int64_t n = lane + 32 * j;
    out[j] = n < N ? v[n] : 0.0f;
  }
}

// Per chunk, from zero: the state at its end, the gradient at its start (times α of its first
// token, as the reverse recurrence passes it on) and the chunk's decay Π α_t.
template <int SLOTS, int R>
__global__ void ssd_bwd_local(BwdParams p) {
  const Work w = block_work<R>(p);
  const int lane = threadIdx.x & 31;
  const int64_t H = p.H, P = p.P, N = p.N;
  const float A = p.A[w.h];
  float S[R][SLOTS] = {}, dS[R][SLOTS] = {};
  float total = 1.0f;
  for (int64_t t = w.t0; t < w.t1; ++t) {
    const int64_t bt = w.b * p.L + t;
    const float dt = p.dt[bt * H + w.h], a = expf(dt * A);
    total *= a;
    float Bn[SLOTS];
    load_state_row<SLOTS>(p.B + (bt * p.G + w.g) * N, N, Bn);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = w.row0 + r;
      const float dxv = row < P ? dt * p.x[(bt * H + w.h) * P + row] : 0.0f;
#pragma unroll
      for (int j = 0; j < SLOTS; ++j) S[r][j] = a * S[r][j] + dxv * Bn[j];
    }
  }
  for (int64_t t = w.t1 - 1; t >= w.t0; --t) {
    const int64_t bt = w.b * p.L + t;
    const float a = expf(p.dt[bt * H + w.h] * A);
    float Cn[SLOTS];
    load_state_row<SLOTS>(p.C + (bt * p.G + w.g) * N, N, Cn);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = w.row0 + r;
      const float dyv = row < P ? p.dy[(bt * H + w.h) * P + row] : 0.0f;
#pragma unroll
      for (int j = 0; j < SLOTS; ++j) dS[r][j] = (dS[r][j] + dyv * Cn[j]) * a;
    }
  }
  const int64_t base = (w.bh * p.n_chunks + w.c) * P * N;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int j = 0; j < SLOTS; ++j) {
      const int64_t row = w.row0 + r, n = lane + 32 * j;
      if (row < P && n < N) {
        p.S_chunk[base + row * N + n] = S[r][j];
        p.dS_chunk[base + row * N + n] = dS[r][j];
      }
    }
  if (threadIdx.x == 0 && blockIdx.z == 0) p.decay[w.bh * p.n_chunks + w.c] = total;
}

// Chunk-level passing, one thread per state entry: forward, S_chunk becomes the state entering
// each chunk; in reverse, dS_chunk becomes the gradient arriving at each chunk's end (times α of
// the next chunk's first token). Both are carry ← decay·carry + local.
__global__ void ssd_bwd_pass(BwdParams p) {
  const int64_t PN = p.P * p.N, i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= p.batch * p.H * PN) return;
  const int64_t bh = i / PN, e = i % PN, nc = p.n_chunks;
  float carry = 0.0f;
  for (int64_t c = 0; c < nc; ++c) {
    float* s = p.S_chunk + (bh * nc + c) * PN + e;
    const float local = *s;
    *s = carry;
    carry = p.decay[bh * nc + c] * carry + local;
  }
  carry = 0.0f;
  for (int64_t c = nc - 1; c >= 0; --c) {
    float* s = p.dS_chunk + (bh * nc + c) * PN + e;
    const float local = *s;
    *s = carry;
    carry = p.decay[bh * nc + c] * carry + local;
  }
}

// The row (of R) whose warp total rows_sum leaves in lane l: 2·bit4 + bit3 for R = 4.
template <int R>
__device__ __forceinline__ int lane_row(int lane) {
  static_assert(R == 1 || R == 4, "rows per warp");
  return R == 1 ? 0 : ((lane >> 4) & 1) * 2 + ((lane >> 3) & 1);
}

// Warp totals of R per-lane values, each lane getting that of row lane_row(lane): each butterfly
// step halves the values a lane carries (R = 4: 2 + 1 + 3 shuffles instead of 4 warp sums' 20).
template <int R>
__device__ __forceinline__ float rows_sum(const float (&v)[R]) {
  if constexpr (R == 1) {
    return mamba::cuda::warp_sum(v[0]);
  } else {
    const int lane = threadIdx.x & 31;
    const bool hi = lane & 16, mid = lane & 8;
    const unsigned full = 0xffffffffu;
    const float a0 = (hi ? v[2] : v[0]) + __shfl_xor_sync(full, hi ? v[0] : v[2], 16);
    const float a1 = (hi ? v[3] : v[1]) + __shfl_xor_sync(full, hi ? v[1] : v[3], 16);
    float r = (mid ? a1 : a0) + __shfl_xor_sync(full, mid ? a0 : a1, 8);
#pragma unroll
    for (int off = 4; off > 0; off >>= 1) r += __shfl_xor_sync(full, r, off);
    return r;
  }
}

// Adds the block's shared per-token sums of tokens [s0, s1) to out ([batch, L, G, N]) and clears them.
template <int SLOTS>
__device__ void flush(float (&buf)[kSub][32 * SLOTS], float* out, const BwdParams& p, const Work& w,
                      int64_t s0, int64_t s1) {
  __syncthreads();
  const int64_t count = (s1 - s0) * p.N;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t k = i / p.N, n = i % p.N;
    atomicAdd(out + ((w.b * p.L + s0 + k) * p.G + w.g) * p.N + n, buf[k][n]);
    buf[k][n] = 0.0f;
  }
  __syncthreads();
}

template <int SLOTS, int R>
__global__ void __launch_bounds__(32 * kMaxWarps) ssd_bwd_main(BwdParams p) {
  __shared__ float buf[kSub][32 * SLOTS];  // dC, then dB, of kSub tokens summed over the rows
  __shared__ float s_w[kChunk];            // Σ_p dy_t·ỹ_t
  __shared__ float s_xb[kChunk];           // Σ_p x_t·(dS_t·B_t)
  __shared__ float s_bound;                // Σ dS_arriving⊙S_end
  const Work w = block_work<R>(p);
  const int lane = threadIdx.x & 31;
  const int64_t H = p.H, P = p.P, N = p.N;
  for (int i = threadIdx.x; i < kSub * 32 * SLOTS; i += blockDim.x) (&buf[0][0])[i] = 0.0f;
  for (int i = threadIdx.x; i < kChunk; i += blockDim.x) s_w[i] = s_xb[i] = 0.0f;
  if (threadIdx.x == 0) s_bound = 0.0f;
  __syncthreads();
  const float A = p.A[w.h];
  const int64_t base = (w.bh * p.n_chunks + w.c) * P * N;
  float S[R][SLOTS], dS[R][SLOTS], dD[R] = {};
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = w.row0 + r;
#pragma unroll
    for (int j = 0; j < SLOTS; ++j) {
      const int64_t n = lane + 32 * j;
      const bool in = row < P && n < N;
      S[r][j] = in ? p.S_chunk[base + row * N + n] : 0.0f;
      dS[r][j] = in ? p.dS_chunk[base + row * N + n] : 0.0f;
    }
  }
  // Forward: S_t; dC_t = Σ_p dy_t[p]·S_t[p]; ỹ_t·dy_t; dD.
  for (int64_t s0 = w.t0; s0 < w.t1; s0 += kSub) {
    const int64_t s1 = min(w.t1, s0 + kSub);
    for (int64_t t = s0; t < s1; ++t) {
      const int64_t bt = w.b * p.L + t;
      const float dt = p.dt[bt * H + w.h], a = expf(dt * A);
      float Bn[SLOTS], Cn[SLOTS], dCn[SLOTS] = {};
      load_state_row<SLOTS>(p.B + (bt * p.G + w.g) * N, N, Bn);
      load_state_row<SLOTS>(p.C + (bt * p.G + w.g) * N, N, Cn);
      float wsum = 0.0f;  // this lane's share of Σ_p dy[p]·(C·S[p]): one warp sum for all rows
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t row = w.row0 + r;
        const float xv = row < P ? p.x[(bt * H + w.h) * P + row] : 0.0f;
        const float dyv = row < P ? p.dy[(bt * H + w.h) * P + row] : 0.0f;
        const float dxv = dt * xv;
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < SLOTS; ++j) {
          S[r][j] = a * S[r][j] + dxv * Bn[j];
          acc += Cn[j] * S[r][j];
          dCn[j] += dyv * S[r][j];
        }
        wsum += dyv * acc;
        dD[r] += dyv * xv;
      }
      wsum = mamba::cuda::warp_sum(wsum);
#pragma unroll
      for (int j = 0; j < SLOTS; ++j) atomicAdd(&buf[t - s0][lane + 32 * j], dCn[j]);
      if (lane == 0) atomicAdd(&s_w[t - w.t0], wsum);
    }
    flush<SLOTS>(buf, p.dC, p, w, s0, s1);
  }
  float bound = 0.0f;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int j = 0; j < SLOTS; ++j) bound += dS[r][j] * S[r][j];
  bound = mamba::cuda::warp_sum(bound);
  if (lane == 0) atomicAdd(&s_bound, bound);
  // Reverse: dS_t = dy_t·C_tᵀ + α_{t+1}·dS_{t+1}; dx, dB, Σ_p x·(dS·B).
  const int64_t n_sub = (w.t1 - w.t0 + kSub - 1) / kSub;
  for (int64_t sc = n_sub - 1; sc >= 0; --sc) {
    const int64_t s0 = w.t0 + sc * kSub, s1 = min(w.t1, s0 + kSub);
    for (int64_t t = s1 - 1; t >= s0; --t) {
      const int64_t bt = w.b * p.L + t;
      const float dt = p.dt[bt * H + w.h], a = expf(dt * A);
      float Bn[SLOTS], Cn[SLOTS], dBn[SLOTS] = {};
      load_state_row<SLOTS>(p.B + (bt * p.G + w.g) * N, N, Bn);
      load_state_row<SLOTS>(p.C + (bt * p.G + w.g) * N, N, Cn);
      float part[R], xs[R], dys[R];  // this lane's share of dS[r]·B, and x, dy of the rows
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t row = w.row0 + r;
        xs[r] = row < P ? p.x[(bt * H + w.h) * P + row] : 0.0f;
        dys[r] = row < P ? p.dy[(bt * H + w.h) * P + row] : 0.0f;
        part[r] = 0.0f;
#pragma unroll
        for (int j = 0; j < SLOTS; ++j) {
          dS[r][j] += dys[r] * Cn[j];
          part[r] += dS[r][j] * Bn[j];
          dBn[j] += xs[r] * dS[r][j];
          dS[r][j] *= a;
        }
      }
      // Lane l now gets dS·B of its row lane_row(l), the first lane of each row group writes dx.
      const float dSB = rows_sum<R>(part);
      const int rl = lane_row<R>(lane);
      float xl = 0.0f, dyl = 0.0f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r == rl) xl = xs[r], dyl = dys[r];
      }
      const int64_t row = w.row0 + rl;
      if ((lane & (32 / R - 1)) == 0 && row < P) {
        const float Dc = p.d_per_channel ? p.D[w.h * P + row] : p.D[w.h];
        p.dx[(bt * H + w.h) * P + row] = Dc * dyl + dt * dSB;
      }
      float xb = xl * dSB;  // Σ_p x·(dS·B): one lane per row group
#pragma unroll
      for (int off = 32 / R; off < 32; off <<= 1) xb += __shfl_xor_sync(0xffffffffu, xb, off);
#pragma unroll
      for (int j = 0; j < SLOTS; ++j) atomicAdd(&buf[t - s0][lane + 32 * j], dt * dBn[j]);
      if (lane == 0) atomicAdd(&s_xb[t - w.t0], xb);
    }
    flush<SLOTS>(buf, p.dB, p, w, s0, s1);
  }
  if (lane == 0) {
    float dD_head = 0.0f;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = w.row0 + r;
      if (row >= P) continue;
      if (p.d_per_channel)
        atomicAdd(&p.dD[w.h * P + row], dD[r]);
      else
        dD_head += dD[r];
    }
    if (!p.d_per_channel && w.row0 < P) atomicAdd(&p.dD[w.h], dD_head);
  }
  // ddt_t = A·r_t + Σ_p x_t·(dS_t·B_t); dA = Σ_t dt_t·r_t (flush's __syncthreads made the sums
  // whole). Warp 0 runs the reverse cumulative sum 32 tokens at a time, lane 0 the latest token.
  if (threadIdx.x < 32) {
    float carry = s_bound, dA = 0.0f;
    for (int64_t top = w.t1 - 1; top >= w.t0; top -= 32) {
      const int64_t t = top - lane;
      const bool in = t >= w.t0;
      const int64_t i = (w.b * p.L + (in ? t : w.t0)) * H + w.h;
      const float dt = in ? p.dt[i] : 0.0f, xb = in ? s_xb[t - w.t0] : 0.0f;
      float r = in ? s_w[t - w.t0] - dt * xb : 0.0f;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const float up = __shfl_up_sync(0xffffffffu, r, off);
        if (lane >= off) r += up;
      }
      const float total = __shfl_sync(0xffffffffu, r, 31);
      r += carry;
      carry += total;
      if (t == 0) r = 0.0f;  // no state before the first token
      if (in) {
        atomicAdd(&p.ddt[i], A * r + xb);
        dA += dt * r;
      }
    }
    dA = mamba::cuda::warp_sum(dA);
    if (lane == 0) atomicAdd(&p.dA[w.h], dA);
  }
}

template <int SLOTS, int R>
void launch(const BwdParams& p, int warps, int64_t tiles) {
  const dim3 grid(static_cast<unsigned>(p.batch * p.H), static_cast<unsigned>(p.n_chunks),
                  static_cast<unsigned>(tiles));
  cudaStream_t s = mamba::cuda::stream();
  ssd_bwd_local<SLOTS, R><<<grid, 32 * warps, 0, s>>>(p);
  CUDA_CHECK_LAUNCH();
  ssd_bwd_pass<<<mamba::cuda::ceil_div(p.batch * p.H * p.P * p.N, 256), 256, 0, s>>>(p);
  CUDA_CHECK_LAUNCH();
  ssd_bwd_main<SLOTS, R><<<grid, 32 * warps, 0, s>>>(p);
  CUDA_CHECK_LAUNCH();
}

template <int R>
void launch_rows(const BwdParams& p, int warps, int64_t tiles) {
  if (p.N <= 32)
    launch<1, R>(p, warps, tiles);
  else if (p.N <= 64)
    launch<2, R>(p, warps, tiles);
  else if (p.N <= 128)
    launch<4, R>(p, warps, tiles);
  else
    launch<8, R>(p, warps, tiles);
}

}  // namespace

SsdGrads ssd_bwd_cuda_exact(const SsdArgs& a, const Tensor& dy_in) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&a.x, &a.dt, &a.A, &a.B, &a.C, &a.D, &dy_in})
    mamba::cuda::check_cuda_tensor(*t, "ssd_bwd argument");
  const Tensor dy = dy_in.contiguous();
  const int64_t batch = a.x.size(0), L = a.x.size(1), H = a.x.size(2), P = a.x.size(3);
  const int64_t G = a.B.size(2), N = a.B.size(3);
  MAMBA_CHECK(a.x.is_contiguous() && a.B.is_contiguous() && a.C.is_contiguous() && a.dt.is_contiguous());
  MAMBA_CHECK(a.B.shape() == a.C.shape() && H % G == 0 && dy.shape() == a.x.shape());
  MAMBA_CHECK(a.dt.shape() == (Shape{batch, L, H}));
  MAMBA_CHECK(N >= 1 && N <= 256, "ssd_bwd (CUDA): d_state " << N << " not in [1, 256]");
  const bool d_per_channel = a.D.numel() == H * P;
  MAMBA_CHECK(d_per_channel || a.D.numel() == H);
  SsdGrads g;
  g.dx = Tensor::empty(a.x.shape(), DType::f32, Device::cuda);
  g.ddt = Tensor::zeros(a.dt.shape(), DType::f32, Device::cuda);
  g.dA = Tensor::zeros({H}, DType::f32, Device::cuda);
  g.dB = Tensor::zeros(a.B.shape(), DType::f32, Device::cuda);
  g.dC = Tensor::zeros(a.C.shape(), DType::f32, Device::cuda);
  g.dD = Tensor::zeros(a.D.shape(), DType::f32, Device::cuda);
  if (g.dx.numel() == 0) return g;
  BwdParams p{};
  p.x = a.x.f32(), p.dt = a.dt.f32(), p.A = a.A.f32(), p.B = a.B.f32(), p.C = a.C.f32(), p.D = a.D.f32();
  p.dy = dy.f32();
  p.dx = g.dx.f32(), p.ddt = g.ddt.f32(), p.dA = g.dA.f32(), p.dB = g.dB.f32(), p.dC = g.dC.f32();
  p.dD = g.dD.f32();
  p.batch = batch, p.L = L, p.H = H, p.P = P, p.G = G, p.N = N, p.d_per_channel = d_per_channel;
  p.n_chunks = (L + kChunk - 1) / kChunk;
  MAMBA_CHECK(p.n_chunks <= 65535, "ssd_bwd (CUDA): seq_len " << L << " too long");
  const Tensor S_chunk = Tensor::empty({batch * H, p.n_chunks, P, N}, DType::f32, Device::cuda);
  const Tensor dS_chunk = Tensor::empty({batch * H, p.n_chunks, P, N}, DType::f32, Device::cuda);
  const Tensor decay = Tensor::empty({batch * H, p.n_chunks}, DType::f32, Device::cuda);
  p.S_chunk = S_chunk.f32(), p.dS_chunk = dS_chunk.f32(), p.decay = decay.f32();
  // One row per warp for small heads; else 4 rows per warp, up to kMaxWarps warps, more row
  // tiles (blocks) beyond 64 rows.
  if (P <= kMaxWarps) {
    launch_rows<1>(p, static_cast<int>(P), 1);
  } else {
    const int warps = static_cast<int>(std::min<int64_t>(kMaxWarps, (P + 3) / 4));
    launch_rows<4>(p, warps, (P + 4 * warps - 1) / (4 * warps));
  }
  return g;
}

}  // namespace mamba::ops
