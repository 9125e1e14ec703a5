// Backward of the Mamba-3 scan on CUDA (SPEC §3.4): the gradients of mamba3_scan_bwd.cpp, whole
// sequence from a zero state, fp32. mamba3_scan_bwd_cuda sends SISO to the GEMM form
// (mamba3_scan_bwd_gemm.cu); this file's exact kernels take MIMO, and SISO too under
// KernelPlan::mamba3_bwd = exact. The official kernel parallelizes over (batch, head) only; here chunks run
// in parallel too, in five launches:
//  1. chunk_local: per chunk, the end state from a zero entry (S_loc), the gradient of the chunk's
//     first state from the chunk's own dy (D_loc), both as weighted sums over the chunk's tokens,
//     and the chunk's two decay products;
//  2. carry: per state entry, sequential over chunks: the entry states E_c (forward) and the total
//     gradient F_c of each chunk's first state (reverse), written over S_loc and D_loc;
//  3. chunk_bwd: per chunk, the states re-run forward from E_c (dq = S_tᵀ·dy), then dS backward
//     from F_{c+1} (dk, dx, dβ, dγ). dα = ⟨dS_t, S_{t−1}⟩ would need every state of the chunk kept;
//     instead P_t = α_t·dα_t = ⟨dS_t, S_t⟩ − β_t·dβ_t − γ_t·dγ_t and ⟨dS_t, S_t⟩ = P_{t+1} + ⟨Y_t, S_t⟩
//     (Y_t = Σ_r dy_{t,r} q_{t,r}ᵀ), so P_t is the reverse cumsum of a_t = Σ_r q_{t,r}·dq_{t,r} −
//     β_t·dβ_t − γ_t·dγ_t; each chunk sums its own part and its total;
//  4. suffix: adds the later chunks' totals of a to dadt;
//  5. weights: dD and dmimo_x summed over the (batch, chunk) partials.
// Chunk blocks: 16 warps; warp w holds state rows p = w·RPW + i, lane l entries n = l + 32·j.
#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

namespace {

constexpr int kWarps = 16, kThreads = 32 * kWarps;
constexpr int64_t kMaxChunk = 64;  // tokens per chunk (per-token partials live in shared memory)
// Two blocks per SM where a thread's share of the state is small (d_state <= 128, head_dim <= 64):
// one block's barrier waits overlap the other's work, at the price of a few spilled registers.
template <int NS, int RPW>
constexpr int kMinBlocks = (NS * RPW <= 16) ? 2 : 1;

struct BwdParams {
  const float *x, *q, *k, *adt, *dt, *trap, *D, *mimo_x, *dy;  // mimo_x null for SISO
  float *dx, *dq, *dk, *dadt, *ddt, *dtrap;
  float* state;     // [batch·n_heads, n_chunks, head_dim, d_state]: S_loc, then E_c
  float* dstate;    // same: D_loc, then F_c
  float* decay;     // [batch·n_heads, n_chunks, 2]: Π α over the chunk; Π α from its 2nd token
                    // through the next chunk's first
  float* total;     // [batch·n_heads, n_chunks]: Σ a_t over the chunk, then over the later chunks
  float* dD_part;   // [batch·n_heads, n_chunks]
  float* dmx_part;  // [batch·n_heads, n_chunks, rank, head_dim] (MIMO only)
  int64_t batch, seq_len, rank, n_heads, head_dim, d_state, chunk, n_chunks;
};

struct Coefs {
  float alpha, beta, gamma;
};

// α, β, γ of token t (zero past the end), as the CPU op.
__device__ Coefs coefs_at(const BwdParams& p, int64_t b, int64_t h, int64_t t) {
  if (t >= p.seq_len) return {0.0f, 0.0f, 0.0f};
  const int64_t i = (b * p.seq_len + t) * p.n_heads + h;
  const float dt = p.dt[i], lambda = p.trap[i], alpha = expf(p.adt[i]);
  return {alpha, (1.0f - lambda) * dt * alpha, lambda * dt};
}

// Thread coordinates in a chunk block.
struct Lane {
  int64_t b, h, bh, c, t0, len;
  int warp, lane;
};

__device__ Lane lane_of(const BwdParams& p) {
  Lane l;
  l.c = blockIdx.x % p.n_chunks;
  l.bh = blockIdx.x / p.n_chunks;
  l.b = l.bh / p.n_heads;
  l.h = l.bh % p.n_heads;
  l.t0 = l.c * p.chunk;
  l.len = p.seq_len - l.t0 < p.chunk ? p.seq_len - l.t0 : p.chunk;
  l.warp = threadIdx.x >> 5;
  l.lane = threadIdx.x & 31;
  return l;
}

// Entries n of a d_state vector held by this lane (0 past d_state).
template <int NS>
__device__ void load_cols(const float* v, int64_t N, int lane, float (&out)[NS]) {
#pragma unroll
  for (int j = 0; j < NS; ++j) out[j] = lane + 32 * j < N ? v[lane + 32 * j] : 0.0f;
}

// Rows p of a head_dim vector held by this warp (0 past head_dim).
template <int RPW>
__device__ void load_rows(const float* v, int64_t P, int warp, float (&out)[RPW]) {
#pragma unroll
  for (int i = 0; i < RPW; ++i) out[i] = warp * RPW + i < P ? v[warp * RPW + i] : 0.0f;
}

// Offset of the d_state row (b, t, r, h) in q, k, dq, dk.
__device__ int64_t qk_at(const BwdParams& p, int64_t b, int64_t t, int64_t r, int64_t h) {
  return (((b * p.seq_len + t) * p.rank + r) * p.n_heads + h) * p.d_state;
}

// v_{t,r}[p] = x_t[p]·mimo_x[h, r, p] for this warp's rows; scale gets mimo_x (1 for SISO).
template <int RPW>
__device__ void load_values(const BwdParams& p, int64_t b, int64_t t, int64_t r, int64_t h, int warp,
                            float (&v)[RPW], float (&scale)[RPW]) {
  const int64_t P = p.head_dim;
  load_rows(p.x + ((b * p.seq_len + t) * p.n_heads + h) * P, P, warp, v);
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int64_t row = warp * RPW + i;
    scale[i] = p.mimo_x && row < P ? p.mimo_x[(h * p.rank + r) * P + row] : 1.0f;
    v[i] *= scale[i];
  }
}

template <int NS, int RPW>
__device__ void load_tile(const float* src, const BwdParams& p, const Lane& l, float (&S)[RPW][NS]) {
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int64_t row = l.warp * RPW + i;
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      const int64_t n = l.lane + 32 * j;
      S[i][j] = row < p.head_dim && n < p.d_state ? src[row * p.d_state + n] : 0.0f;
    }
  }
}

template <int NS, int RPW>
__device__ void store_tile(float* dst, const BwdParams& p, const Lane& l, const float (&S)[RPW][NS]) {
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int64_t row = l.warp * RPW + i;
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      const int64_t n = l.lane + 32 * j;
      if (row < p.head_dim && n < p.d_state) dst[row * p.d_state + n] = S[i][j];
    }
  }
}

// S ← α_t·S + Σ_r (β_t·v_{t−1,r} k_{t−1,r}ᵀ + γ_t·v_{t,r} k_{t,r}ᵀ) on this thread's entries.
template <int NS, int RPW>
__device__ void advance(const BwdParams& p, const Lane& l, int64_t t, float (&S)[RPW][NS]) {
  const Coefs c = coefs_at(p, l.b, l.h, t);
#pragma unroll
  for (int i = 0; i < RPW; ++i)
#pragma unroll
    for (int j = 0; j < NS; ++j) S[i][j] *= c.alpha;
  for (int64_t r = 0; r < p.rank; ++r) {
    float kn[NS], kb[NS], vn[RPW], vb[RPW], scale[RPW];
    load_cols(p.k + qk_at(p, l.b, t, r, l.h), p.d_state, l.lane, kn);
    load_values(p, l.b, t, r, l.h, l.warp, vn, scale);
    if (t > 0) {  // token −1 is the zero state: no β term
      load_cols(p.k + qk_at(p, l.b, t - 1, r, l.h), p.d_state, l.lane, kb);
      load_values(p, l.b, t - 1, r, l.h, l.warp, vb, scale);
    } else {
#pragma unroll
      for (int j = 0; j < NS; ++j) kb[j] = 0.0f;
#pragma unroll
      for (int i = 0; i < RPW; ++i) vb[i] = 0.0f;
    }
#pragma unroll
    for (int i = 0; i < RPW; ++i) {
      const float cn = c.gamma * vn[i], cb = c.beta * vb[i];
#pragma unroll
      for (int j = 0; j < NS; ++j) S[i][j] += cn * kn[j] + cb * kb[j];
    }
  }
}

// dy_{t,r} on this warp's rows, q_{t,r} on this lane's entries.
template <int NS, int RPW>
__device__ void load_dy_q(const BwdParams& p, const Lane& l, int64_t t, int64_t r, float (&dyv)[RPW],
                          float (&qn)[NS]) {
  load_rows(p.dy + (((l.b * p.seq_len + t) * p.rank + r) * p.n_heads + l.h) * p.head_dim, p.head_dim, l.warp,
            dyv);
  load_cols(p.q + qk_at(p, l.b, t, r, l.h), p.d_state, l.lane, qn);
}

// out[n] = Σ over the block's rows of each thread's row-partial part[j] (n = lane + 32·j). Two
// alternating buffers: one barrier per call keeps a buffer from being rewritten while still read.
template <int NS>
__device__ void reduce_rows(const float (&part)[NS], float (*red)[kWarps][32 * NS], int& parity, float* out,
                            int64_t N, int warp, int lane) {
#pragma unroll
  for (int j = 0; j < NS; ++j) red[parity][warp][lane + 32 * j] = part[j];
  __syncthreads();
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += red[parity][w][n];
    out[n] = s;
  }
  parity ^= 1;
}

// Launch 1: S_loc, D_loc and the decay products of one chunk, as weighted sums (one FMA per state
// entry and (token, rank) instead of re-running the recurrence):
//   S_loc = Σ_{s=t0−1}^{t1} c_s U_s,  c_s = γ_s·Π_{u=s+1}^{t1} α_u + β_{s+1}·Π_{u=s+2}^{t1} α_u
//   D_loc = Σ_{s=t0}^{t1} w_s Y_s,    w_s = Π_{u=t0+1}^{s} α_u
// (γ_{t0−1} and β_{t1+1} outside the chunk count as 0; U_{−1} = 0: zero state).
template <int NS, int RPW>
__global__ void __launch_bounds__(kThreads, kMinBlocks<NS, RPW>) chunk_local_kernel(BwdParams p) {
  __shared__ float coef_u[kMaxChunk + 1];  // c_s at s − t0 + 1
  __shared__ float coef_y[kMaxChunk];      // w_s at s − t0
  const Lane l = lane_of(p);
  const int64_t PN = p.head_dim * p.d_state, slot = l.bh * p.n_chunks + l.c, t1 = l.t0 + l.len - 1;
  if (threadIdx.x == 0) {
    float decay_s = 1.0f, decay_next = 0.0f, beta_next = 0.0f;  // Π_{u=s+1}^{t1} α_u, Π_{u=s+2}^{t1} α_u
    for (int64_t s = t1; s >= l.t0 - 1 && s >= 0; --s) {
      const Coefs c = s >= l.t0 ? coefs_at(p, l.b, l.h, s) : Coefs{1.0f, 0.0f, 0.0f};
      coef_u[s - l.t0 + 1] = c.gamma * decay_s + beta_next * decay_next;
      decay_next = decay_s;
      beta_next = c.beta;
      decay_s *= c.alpha;
    }
    float w = 1.0f;
    for (int64_t s = l.t0; s <= t1; ++s) {
      coef_y[s - l.t0] = w;
      if (s < t1) w *= coefs_at(p, l.b, l.h, s + 1).alpha;
    }
    const int64_t last = t1 + 1 < p.seq_len ? t1 + 1 : p.seq_len - 1;
    float after_first = 1.0f;
    for (int64_t t = l.t0 + 1; t <= last; ++t) after_first *= coefs_at(p, l.b, l.h, t).alpha;
    p.decay[2 * slot] = decay_s;  // Π_{u=t0}^{t1} α_u
    p.decay[2 * slot + 1] = after_first;
  }
  __syncthreads();
  float S[RPW][NS];
#pragma unroll
  for (int i = 0; i < RPW; ++i)
#pragma unroll
    for (int j = 0; j < NS; ++j) S[i][j] = 0.0f;
  for (int64_t s = l.t0 > 0 ? l.t0 - 1 : 0; s <= t1; ++s) {
    const float c = coef_u[s - l.t0 + 1];
    for (int64_t r = 0; r < p.rank; ++r) {
      float kn[NS], vn[RPW], scale[RPW];
      load_cols(p.k + qk_at(p, l.b, s, r, l.h), p.d_state, l.lane, kn);
      load_values(p, l.b, s, r, l.h, l.warp, vn, scale);
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        const float cv = c * vn[i];
#pragma unroll
        for (int j = 0; j < NS; ++j) S[i][j] += cv * kn[j];
      }
    }
  }
  store_tile(p.state + slot * PN, p, l, S);
#pragma unroll
  for (int i = 0; i < RPW; ++i)
#pragma unroll
    for (int j = 0; j < NS; ++j) S[i][j] = 0.0f;
  for (int64_t s = l.t0; s <= t1; ++s) {
    const float w = coef_y[s - l.t0];
    for (int64_t r = 0; r < p.rank; ++r) {
      float dyv[RPW], qn[NS];
      load_dy_q(p, l, s, r, dyv, qn);
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        const float wd = w * dyv[i];
#pragma unroll
        for (int j = 0; j < NS; ++j) S[i][j] += wd * qn[j];
      }
    }
  }
  store_tile(p.dstate + slot * PN, p, l, S);
}

// Launch 2: E_{c+1} = (Π α)·E_c + S_loc_c from E_0 = 0; F_c = D_loc_c + (Π α)·F_{c+1} from F_n = 0.
// One thread per (batch, head, state entry).
__global__ void carry_kernel(BwdParams p) {
  const int64_t PN = p.head_dim * p.d_state, nc = p.n_chunks;
  MAMBA_GRID_STRIDE_LOOP(i, p.batch * p.n_heads * PN) {
    const int64_t bh = i / PN, e = i % PN;
    float E = 0.0f;
    for (int64_t c = 0; c < nc; ++c) {
      float* s = p.state + (bh * nc + c) * PN + e;
      const float local = *s;
      *s = E;
      E = p.decay[2 * (bh * nc + c)] * E + local;
    }
    float F = 0.0f;
    for (int64_t c = nc - 1; c >= 0; --c) {
      float* d = p.dstate + (bh * nc + c) * PN + e;
      F = *d + (c + 1 < nc ? p.decay[2 * (bh * nc + c) + 1] * F : 0.0f);
      *d = F;
    }
  }
}

// Launch 3: every gradient of one chunk (dadt without the later chunks' part).
template <int NS, int RPW>
__global__ void __launch_bounds__(kThreads, kMinBlocks<NS, RPW>) chunk_bwd_kernel(BwdParams p) {
  __shared__ float red[2][kWarps][32 * NS];
  __shared__ float scal[3][kMaxChunk][kWarps];  // per token and warp: ⟨Y_t, S_t⟩, dγ_t, dβ_t
  __shared__ double dD_warp[kWarps];
  const Lane l = lane_of(p);
  const int64_t P = p.head_dim, N = p.d_state, R = p.rank, H = p.n_heads, L = p.seq_len;
  const int64_t PN = P * N, slot = l.bh * p.n_chunks + l.c;
  float* dmx = p.dmx_part ? p.dmx_part + slot * R * P : nullptr;
  if (dmx && l.lane == 0)
    for (int64_t r = 0; r < R; ++r)
      for (int i = 0; i < RPW; ++i)
        if (l.warp * RPW + i < P) dmx[r * P + l.warp * RPW + i] = 0.0f;
  int parity = 0;
  {  // Forward over the chunk: S_t, dq_{t,r} = S_tᵀ dy_{t,r}, ⟨Y_t, S_t⟩ = Σ_r q_{t,r}·dq_{t,r}.
    float S[RPW][NS];
    load_tile(p.state + slot * PN, p, l, S);
    for (int64_t tl = 0; tl < l.len; ++tl) {
      const int64_t t = l.t0 + tl;
      advance(p, l, t, S);
      float ys = 0.0f;
      for (int64_t r = 0; r < R; ++r) {
        float dyv[RPW], qn[NS], part[NS];
        load_dy_q(p, l, t, r, dyv, qn);
#pragma unroll
        for (int j = 0; j < NS; ++j) {
          part[j] = 0.0f;
#pragma unroll
          for (int i = 0; i < RPW; ++i) part[j] += S[i][j] * dyv[i];
          ys += part[j] * qn[j];
        }
        reduce_rows(part, red, parity, p.dq + qk_at(p, l.b, t, r, l.h), N, l.warp, l.lane);
      }
      ys = mamba::cuda::warp_sum(ys);
      if (l.lane == 0) scal[0][tl][l.warp] = ys;
    }
  }
  // Reverse over the chunk from dS_{t1+1} = F_{c+1}.
  float dSn[RPW][NS], dS[RPW][NS];
  if (l.c + 1 < p.n_chunks)
    load_tile(p.dstate + (slot + 1) * PN, p, l, dSn);
  else
#pragma unroll
    for (int i = 0; i < RPW; ++i)
#pragma unroll
      for (int j = 0; j < NS; ++j) dSn[i][j] = 0.0f;
  const float D = p.D[l.h];
  double dD_acc = 0.0;  // a sum over the chunk's tokens and this warp's rows: kept in double
  for (int64_t tl = l.len - 1; tl >= 0; --tl) {
    const int64_t t = l.t0 + tl;
    const Coefs cur = coefs_at(p, l.b, l.h, t), next = coefs_at(p, l.b, l.h, t + 1);
#pragma unroll
    for (int i = 0; i < RPW; ++i)
#pragma unroll
      for (int j = 0; j < NS; ++j) dS[i][j] = next.alpha * dSn[i][j];
    for (int64_t r = 0; r < R; ++r) {
      float dyv[RPW], qn[NS];
      load_dy_q(p, l, t, r, dyv, qn);
#pragma unroll
      for (int i = 0; i < RPW; ++i)
#pragma unroll
        for (int j = 0; j < NS; ++j) dS[i][j] += dyv[i] * qn[j];
    }
    float d_gamma = 0.0f, d_beta = 0.0f, dxv[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) dxv[i] = 0.0f;
    float xv[RPW];
    load_rows(p.x + ((l.b * L + t) * H + l.h) * P, P, l.warp, xv);
    for (int64_t r = 0; r < R; ++r) {
      float kn[NS], vn[RPW], scale[RPW], dyv[RPW], part[NS];
      load_cols(p.k + qk_at(p, l.b, t, r, l.h), N, l.lane, kn);
      load_values(p, l.b, t, r, l.h, l.warp, vn, scale);
      load_rows(p.dy + (((l.b * L + t) * R + r) * H + l.h) * P, P, l.warp, dyv);
#pragma unroll
      for (int j = 0; j < NS; ++j) part[j] = 0.0f;
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        // dU_t = γ_t·dS_t + β_{t+1}·dS_{t+1}: dk gets dU_tᵀ v, dv = dU_t k, dγ = Σ v·(dS_t k).
        const float gv = cur.gamma * vn[i], bv = next.beta * vn[i];
        float dSk = 0.0f, dSnk = 0.0f;  // lane partials of (dS_t k)[p], (dS_{t+1} k)[p]
#pragma unroll
        for (int j = 0; j < NS; ++j) {
          part[j] += gv * dS[i][j] + bv * dSn[i][j];
          dSk += dS[i][j] * kn[j];
          dSnk += dSn[i][j] * kn[j];
        }
        d_gamma += vn[i] * dSk;
        const float dv =
            mamba::cuda::warp_sum(cur.gamma * dSk + next.beta * dSnk) + D * dyv[i];  // d loss / d v_{t,r}[p]
        dD_acc += static_cast<double>(dyv[i]) * vn[i];
        dxv[i] += dv * scale[i];
        const int64_t row = l.warp * RPW + i;
        if (dmx && l.lane == 0 && row < P) dmx[r * P + row] += dv * xv[i];
      }
      reduce_rows(part, red, parity, p.dk + qk_at(p, l.b, t, r, l.h), N, l.warp, l.lane);
      if (t > 0) {
        float kb[NS], vb[RPW];
        load_cols(p.k + qk_at(p, l.b, t - 1, r, l.h), N, l.lane, kb);
        load_values(p, l.b, t - 1, r, l.h, l.warp, vb, scale);
#pragma unroll
        for (int i = 0; i < RPW; ++i) {
          float dSk = 0.0f;
#pragma unroll
          for (int j = 0; j < NS; ++j) dSk += dS[i][j] * kb[j];
          d_beta += vb[i] * dSk;
        }
      }
    }
    if (l.lane == 0)
#pragma unroll
      for (int i = 0; i < RPW; ++i)
        if (l.warp * RPW + i < P) p.dx[((l.b * L + t) * H + l.h) * P + l.warp * RPW + i] = dxv[i];
    d_gamma = mamba::cuda::warp_sum(d_gamma);
    d_beta = mamba::cuda::warp_sum(d_beta);
    if (l.lane == 0) {
      scal[1][tl][l.warp] = d_gamma;
      scal[2][tl][l.warp] = d_beta;
    }
#pragma unroll
    for (int i = 0; i < RPW; ++i)
#pragma unroll
      for (int j = 0; j < NS; ++j) dSn[i][j] = dS[i][j];
  }
  if (l.lane == 0) dD_warp[l.warp] = dD_acc;
  __syncthreads();
  if (threadIdx.x < l.len)  // sum the warps' partials of each token into slot 0
    for (int s = 0; s < 3; ++s) {
      float v = 0.0f;
      for (int w = 0; w < kWarps; ++w) v += scal[s][threadIdx.x][w];
      scal[s][threadIdx.x][0] = v;
    }
  __syncthreads();
  if (threadIdx.x == 0) {
    float suffix = 0.0f;  // Σ_{u ≥ t in the chunk} a_u
    double dD_sum = 0.0;
    for (int64_t tl = l.len - 1; tl >= 0; --tl) {
      const int64_t t = l.t0 + tl, i = (l.b * L + t) * H + l.h;
      const Coefs cur = coefs_at(p, l.b, l.h, t);
      const float d_gamma = scal[1][tl][0], d_beta = scal[2][tl][0];
      suffix += scal[0][tl][0] - cur.beta * d_beta - cur.gamma * d_gamma;
      const float dt = p.dt[i], lambda = p.trap[i];
      p.dadt[i] = suffix + d_beta * cur.beta;
      p.ddt[i] = d_beta * (1.0f - lambda) * cur.alpha + d_gamma * lambda;
      p.dtrap[i] = (d_gamma - d_beta * cur.alpha) * dt;
    }
    p.total[slot] = suffix;
    for (int w = 0; w < kWarps; ++w) dD_sum += dD_warp[w];
    p.dD_part[slot] = static_cast<float>(dD_sum);
  }
}

// Launch 4: dadt += Σ a over the later chunks; token 0 has no α or β term (zero state).
__global__ void suffix_kernel(BwdParams p) {
  const int64_t bh = blockIdx.x, b = bh / p.n_heads, h = bh % p.n_heads, nc = p.n_chunks;
  float* total = p.total + bh * nc;
  if (threadIdx.x == 0) {
    double later = 0.0;
    for (int64_t c = nc - 1; c >= 0; --c) {
      const float own = total[c];
      total[c] = static_cast<float>(later);
      later += own;
    }
  }
  __syncthreads();
  for (int64_t t = threadIdx.x; t < p.seq_len; t += blockDim.x) {
    float& d = p.dadt[(b * p.seq_len + t) * p.n_heads + h];
    d = t == 0 ? 0.0f : d + total[t / p.chunk];
  }
}

// Launch 5: dD[h] and dmimo_x[h, r, p] summed over (batch, chunk) in double.
__global__ void weights_kernel(BwdParams p, float* dD, float* dmimo_x) {
  const int64_t H = p.n_heads, RP = p.rank * p.head_dim, nc = p.n_chunks;
  const int64_t n_out = H + (dmimo_x ? H * RP : 0);
  MAMBA_GRID_STRIDE_LOOP(i, n_out) {
    double s = 0.0;
    if (i < H) {
      for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t c = 0; c < nc; ++c) s += p.dD_part[(b * H + i) * nc + c];
      dD[i] = static_cast<float>(s);
    } else {
      const int64_t j = i - H, h = j / RP, rp = j % RP;
      for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t c = 0; c < nc; ++c) s += p.dmx_part[((b * H + h) * nc + c) * RP + rp];
      dmimo_x[j] = static_cast<float>(s);
    }
  }
}

template <int NS, int RPW>
void launch_chunks(const BwdParams& p, cudaStream_t stream) {
  const unsigned int blocks = static_cast<unsigned int>(p.batch * p.n_heads * p.n_chunks);
  chunk_local_kernel<NS, RPW><<<blocks, kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  carry_kernel<<<mamba::cuda::grid_for(p.batch * p.n_heads * p.head_dim * p.d_state), 256, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  chunk_bwd_kernel<NS, RPW><<<blocks, kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

template <int RPW>
void launch_by_state(const BwdParams& p, cudaStream_t stream) {
  if (p.d_state <= 32) return launch_chunks<1, RPW>(p, stream);
  if (p.d_state <= 64) return launch_chunks<2, RPW>(p, stream);
  if (p.d_state <= 128) return launch_chunks<4, RPW>(p, stream);
  launch_chunks<8, RPW>(p, stream);
}

}  // namespace

// bf16_inputs: x, q, k and dy are all bf16 (the fused backward takes them as they are).
Mamba3ScanGrads mamba3_scan_bwd_cuda_grads(const Mamba3ScanArgs& a, const Tensor& dy,
                                           bool bf16_inputs = false) {
  MAMBA_CHECK(a.x.dim() == 4 && a.q.dim() == 5,
              "mamba3_scan_bwd: x must be [batch, seq_len, n_heads, head_dim]");
  const int64_t B = a.x.size(0), L = a.x.size(1), H = a.x.size(2), P = a.x.size(3), R = a.q.size(2),
                N = a.q.size(4);
  MAMBA_CHECK(a.q.shape() == (Shape{B, L, R, H, N}) && a.k.shape() == a.q.shape(),
              "q " << shape_str(a.q.shape()) << " and k " << shape_str(a.k.shape()) << " with x "
                   << shape_str(a.x.shape()));
  for (const Tensor* t : std::initializer_list<const Tensor*>{&a.adt, &a.dt, &a.trap})
    MAMBA_CHECK(t->shape() == (Shape{B, L, H}));
  MAMBA_CHECK(dy.shape() == (Shape{B, L, R, H, P}), "dy " << shape_str(dy.shape()));
  MAMBA_CHECK(a.D.numel() == H && (a.mimo_x.defined() ? a.mimo_x.shape() == (Shape{H, R, P}) : R == 1));
  if (!bf16_inputs &&
      (a.x.dtype() == DType::bf16 || a.q.dtype() == DType::bf16 || a.k.dtype() == DType::bf16))
    throw_error(ErrorCode::invalid_argument,
                "mamba3_scan_bwd: bf16 x/q/k (bf16_operands, an inference-only forward) have no backward; "
                "run the forward with f32 operands (bf16_operands = false) for training");
  for (const Tensor* t :
       std::initializer_list<const Tensor*>{&a.x, &a.q, &a.k, &a.adt, &a.dt, &a.trap, &a.D, &dy}) {
    mamba::cuda::check_cuda_tensor(*t, "mamba3_scan_bwd argument");
    const bool input = t == &a.x || t == &a.q || t == &a.k || t == &dy;
    MAMBA_CHECK(t->dtype() == (bf16_inputs && input ? DType::bf16 : DType::f32) && t->is_contiguous(),
                "mamba3_scan_bwd: tensors must be contiguous and f32 (the fused backward: x, q, k, dy "
                "all f32 or all bf16)");
  }
  if (a.mimo_x.defined()) {
    mamba::cuda::check_cuda_tensor(a.mimo_x, "mamba3_scan_bwd: mimo_x");
    MAMBA_CHECK(a.mimo_x.dtype() == DType::f32 && a.mimo_x.is_contiguous());
  }
  auto dev = [](const Shape& s) { return Tensor::empty(s, DType::f32, Device::cuda); };
  Mamba3ScanGrads g;
  g.dx = dev(a.x.shape());
  g.dq = dev(a.q.shape());
  g.dk = dev(a.k.shape());
  g.dadt = dev(a.adt.shape());
  g.ddt = dev(a.adt.shape());
  g.dtrap = dev(a.adt.shape());
  g.dD = Tensor::zeros({H}, DType::f32, Device::cuda);
  if (a.mimo_x.defined()) g.dmimo_x = Tensor::zeros({H, R, P}, DType::f32, Device::cuda);
  return g;
}

Mamba3ScanGrads mamba3_scan_bwd_cuda_exact(const Mamba3ScanArgs& a, const Tensor& dy_in) {
  const Tensor dy = dy_in.contiguous();
  Mamba3ScanGrads g = mamba3_scan_bwd_cuda_grads(a, dy);
  const int64_t B = a.x.size(0), L = a.x.size(1), H = a.x.size(2), P = a.x.size(3), R = a.q.size(2),
                N = a.q.size(4);
  MAMBA_CHECK(N <= 256 && P <= 8 * kWarps,
              "mamba3_scan_bwd (CUDA): d_state " << N << " > 256 or head_dim " << P << " > " << 8 * kWarps);
  if (B * L * H == 0) return g;
  auto dev = [](const Shape& s) { return Tensor::empty(s, DType::f32, Device::cuda); };
  // The chunk length only splits the work (the gradients are the same for any); capped so that
  // the per-token partials of a chunk fit in shared memory.
  const int64_t Q = std::clamp<int64_t>(a.chunk_size, 1, kMaxChunk), nc = (L + Q - 1) / Q;
  const Tensor state = dev({B * H, nc, P, N}), dstate = dev({B * H, nc, P, N});
  const Tensor decay = dev({B * H, nc, 2}), total = dev({B * H, nc}), dD_part = dev({B * H, nc});
  const Tensor dmx_part = a.mimo_x.defined() ? dev({B * H, nc, R, P}) : Tensor();
  const BwdParams p{.x = a.x.f32(),
                    .q = a.q.f32(),
                    .k = a.k.f32(),
                    .adt = a.adt.f32(),
                    .dt = a.dt.f32(),
                    .trap = a.trap.f32(),
                    .D = a.D.f32(),
                    .mimo_x = a.mimo_x.defined() ? a.mimo_x.f32() : nullptr,
                    .dy = dy.f32(),
                    .dx = g.dx.f32(),
                    .dq = g.dq.f32(),
                    .dk = g.dk.f32(),
                    .dadt = g.dadt.f32(),
                    .ddt = g.ddt.f32(),
                    .dtrap = g.dtrap.f32(),
                    .state = state.f32(),
                    .dstate = dstate.f32(),
                    .decay = decay.f32(),
                    .total = total.f32(),
                    .dD_part = dD_part.f32(),
                    .dmx_part = dmx_part.defined() ? dmx_part.f32() : nullptr,
                    .batch = B,
                    .seq_len = L,
                    .rank = R,
                    .n_heads = H,
                    .head_dim = P,
                    .d_state = N,
                    .chunk = Q,
                    .n_chunks = nc};
  cudaStream_t stream = mamba::cuda::stream();
  if (P <= kWarps)
    launch_by_state<1>(p, stream);
  else if (P <= 2 * kWarps)
    launch_by_state<2>(p, stream);
  else if (P <= 4 * kWarps)
    launch_by_state<4>(p, stream);
  else
    launch_by_state<8>(p, stream);
  suffix_kernel<<<static_cast<unsigned int>(B * H), 256, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  const int64_t n_out = H + (a.mimo_x.defined() ? H * R * P : 0);
  weights_kernel<<<mamba::cuda::grid_for(n_out), 256, 0, stream>>>(
      p, g.dD.f32(), a.mimo_x.defined() ? g.dmimo_x.f32() : nullptr);
  CUDA_CHECK_LAUNCH();
  return g;
}

}  // namespace mamba::ops
