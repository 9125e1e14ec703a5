// Chunked scan on tensor cores (SPEC §2.3, §3.5), parallel over (batch, head, chunk) in 3 launches:
// chunk_state (local state of each chunk), state_passing (sequential over chunks, elementwise),
// chunk_scan (outputs from the entering state). Inside a chunk, 64-token tiles carry the state in
// registers, so the stored states are 4× fewer than with 64-token chunks. mma.sync m16n8k16 bf16.
// Mamba-3 MIMO runs the same kernels over (token, rank) rows (template parameter R, see ssd_fast.cuh).
#include <cstddef>
#include <initializer_list>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "ops/ssd/ssd_fast.cuh"
#include "ops/ssd/ssd_mma.cuh"

namespace mamba::ops::cuda {

namespace {

constexpr int kTile = 64;  // rows per tile: tokens, or MIMO (token, rank) rows (the Mamba-3 chunk)
constexpr int kWarps = 4;  // warp w owns tile rows [16w, 16w+16) and state rows [16w, 16w+16)
constexpr int kThreads = 32 * kWarps;
constexpr int kPad = 8;  // bf16 row padding: row strides ≡ 16 B (mod 128 B), no bank conflicts
constexpr float kLog2e = 1.4426950408889634f;

__host__ __device__ constexpr int log2_of(int r) {
  return r <= 1 ? 0 : 1 + log2_of(r / 2);
}

// ---- One pipeline stage in shared memory: a tile of 64 rows (tokens, or (token, rank) pairs) ----

template <int P, int N, bool kWithQ>
struct TileStage {
  static constexpr int kP = P, kN = N, kQK = N + kPad, kX = P + kPad;
  static constexpr bool kHasQ = kWithQ;
  __nv_bfloat16 k[kTile * kQK];               // [token, d_state]
  __nv_bfloat16 x[kTile * kX];                // [token, head_dim]; MIMO: v = x ⊙ mimo_x per row
  float a2[kTile];                            // inclusive cumsum of adt inside the tile, in log2 units
  float sigma[kTile];                         // off-diagonal weight σ_s
  float gamma[kTile];                         // diagonal weight γ_t
  __nv_bfloat16 q[kWithQ ? kTile * kQK : 8];  // [token, d_state]; warp w's rows then stage its y rows
};

struct HeadCoords {
  int b, h, c;  // batch, head, chunk (state_chunk tokens)
};

// Copies the 64 tile rows of a bf16 matrix with kCols columns into shared rows of kLd elements:
// tile row j is (token t0 + j/R, rank j%R), at token·seq_stride + rank·rank_stride (rank_stride 0
// repeats a token's row R times). A thread's column and rank are fixed and its rows step by a
// constant, so the addresses advance by constants (the index arithmetic once cost more
// instructions than the mma).
template <int kCols, int kLd, int R>
__device__ __forceinline__ void copy_rows_async(__nv_bfloat16* dst, const __nv_bfloat16* src,
                                                int64_t seq_stride, int64_t rank_stride, int t0,
                                                int seq_len) {
  constexpr int kVec = kCols / 8, kRowStep = kThreads / kVec, kTokStep = kRowStep / R;
  static_assert(kThreads % kVec == 0 && kTile % kRowStep == 0 && kRowStep % R == 0, "tile copy layout");
  const int row = threadIdx.x / kVec, col = (threadIdx.x % kVec) * 8, tok = t0 + row / R;
  const __nv_bfloat16* from = src + tok * seq_stride + (row % R) * rank_stride + col;
  const int64_t step = kTokStep * seq_stride;
#pragma unroll
  for (int j = 0; j < kTile / kRowStep; ++j) {
    const bool valid = tok + j * kTokStep < seq_len;
    cp_async16(dst + (row + j * kRowStep) * kLd + col, valid ? from : src, valid);
    from += step;
  }
}

// Starts the copies of the tile's rows (tokens [t0, t0 + 64/R)) of k, x (and q) into a stage, as
// one commit group. x is copied once per (token, rank) row: scale_x_rows turns it into v.
template <int R, class Stage>
__device__ void load_tile_async(const ChunkedScanParams& p, const HeadCoords& hc, int t0, Stage& s) {
  const int g = hc.h / p.heads_per_group;
  copy_rows_async<Stage::kN, Stage::kQK, R>(s.k, p.k + hc.b * p.k_batch_stride + g * p.k_group_stride,
                                            p.k_seq_stride, p.k_rank_stride, t0, p.seq_len);
  if constexpr (Stage::kHasQ) {
    copy_rows_async<Stage::kN, Stage::kQK, R>(s.q, p.q + hc.b * p.q_batch_stride + g * p.q_group_stride,
                                              p.q_seq_stride, p.q_rank_stride, t0, p.seq_len);
  }
  copy_rows_async<Stage::kP, Stage::kX, R>(s.x, p.x + hc.b * p.x_batch_stride + hc.h * p.x_head_stride,
                                           p.x_seq_stride, 0, t0, p.seq_len);
  cp_async_commit();
}

// MIMO: x rows → v_{t,r} = x_t ⊙ mimo_x[h, r, :], rounded to bf16 in place. Each thread scales the
// 16-byte pieces it copied itself (the layout of copy_rows_async: fixed column and rank), which its
// own cp.async.wait_group has made visible to it, so no barrier is needed before this.
template <int R, class Stage>
__device__ void scale_x_rows(const ChunkedScanParams& p, int h, Stage& s) {
  constexpr int kVec = Stage::kP / 8, kRowStep = kThreads / kVec;
  const int row = threadIdx.x / kVec, col = (threadIdx.x % kVec) * 8;
  const float* mx = p.mimo_x + h * p.mimo_x_head_stride + (row % R) * p.mimo_x_rank_stride + col;
  float m[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) m[i] = __ldg(mx + i);
#pragma unroll
  for (int j = 0; j < kTile / kRowStep; ++j) {
    uint4* v = reinterpret_cast<uint4*>(&s.x[(row + j * kRowStep) * Stage::kX + col]);
    uint4 u = *v;
    u.x = scale_bf16x2(u.x, m[0], m[1]), u.y = scale_bf16x2(u.y, m[2], m[3]);
    u.z = scale_bf16x2(u.z, m[4], m[5]), u.w = scale_bf16x2(u.w, m[6], m[7]);
    *v = u;
  }
}

// Per-token inputs of a tile as loaded by warp 0: lane l holds rows 2l and 2l+1. R = 1: tokens
// 2l, 2l+1 and 2l+2 (the next token's dt and λ give the folded β); R > 1: both rows are token
// 2l/R, loaded with the next token. Zero past seq_len. Loaded while the tile's copies are in flight.
struct TileCoefLoads {
  float dt[3], trap[3], adt[2];
};

template <int R>
__device__ TileCoefLoads load_coefficients(const ChunkedScanParams& p, const HeadCoords& hc, int t0) {
  constexpr int kTokens = R == 1 ? 3 : 2;
  TileCoefLoads c = {};
  const int lane = threadIdx.x & 31, first = t0 + (2 * lane) / R;
  const int64_t base = hc.b * p.dt_batch_stride + hc.h * p.dt_head_stride;
#pragma unroll
  for (int i = 0; i < kTokens; ++i) {
    const int t = first + i;
    if (t >= p.seq_len) continue;
    const int64_t at = base + t * p.dt_seq_stride;
    c.dt[i] = p.dt[at];
    if (p.weights == ScanWeights::trapezoid) {
      c.trap[i] = p.trap[at];
      if (i < kTokens - 1) c.adt[i] = p.adt[at];
    }
  }
  return c;
}

// Warp 0: the weights σ, γ of each row and the tile's inclusive cumsum of adt (log2 units). Tokens
// past seq_len have adt = σ = γ = 0, so they neither decay nor contribute. A token's decay counts
// once, on its rank-0 row, so all R rows of a token see the token's cumsum.
template <int R, class Stage>
__device__ void store_coefficients(const ChunkedScanParams& p, int h, const TileCoefLoads& c, Stage& s) {
  const int lane = threadIdx.x & 31;
  float log_decay[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int cur = R == 1 ? i : 0;  // the row's token among the loaded ones
    float adt, sigma, gamma;
    if (p.weights == ScanWeights::ssd) {
      adt = c.dt[cur] * p.A[h];
      sigma = gamma = c.dt[cur];
    } else {  // β of token t+1 folded into token t's key (§3.5); none after the last token
      adt = c.adt[cur];
      gamma = c.trap[cur] * c.dt[cur];
      sigma = gamma + c.dt[cur + 1] * (1.0f - c.trap[cur + 1]);
    }
    const bool rank0 = R == 1 || (i == 0 && (2 * lane) % R == 0);
    log_decay[i] = rank0 ? adt * kLog2e : 0.0f;
    s.sigma[2 * lane + i] = sigma;
    s.gamma[2 * lane + i] = gamma;
  }
  float run = log_decay[0] + log_decay[1];
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float up = __shfl_up_sync(0xffffffffu, run, off);
    if (lane >= off) run += up;
  }
  s.a2[2 * lane] = run - log_decay[1];
  s.a2[2 * lane + 1] = run;
}

// H ← exp(a_last)·H + Σ_s exp(a_last − a_s)·σ_s·x_s k_sᵀ for the warp's 16 state rows (head_dim).
template <int P, int N, class Stage>
__device__ void update_state(const Stage& s, float (&H)[N / 8][4]) {
  using Smem = Stage;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, qd = lane & 3;
  const float a_last = s.a2[kTile - 1], decay = exp2f(a_last);
#pragma unroll
  for (int nt = 0; nt < N / 8; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) H[nt][i] *= decay;
  }
  auto weight = [&](int t) { return exp2f(fminf(a_last - s.a2[t], 0.0f)) * s.sigma[t]; };
#pragma unroll
  for (int ks = 0; ks < kTile / 16; ++ks) {
    // A = (x·weight)ᵀ [head_dim, token], from x [token, head_dim] by a transposing load.
    uint32_t a[4];
    ldsm_x4_trans(
        a, &s.x[(ks * 16 + (lane & 7) + (lane >> 4) * 8) * Smem::kX + warp * 16 + ((lane >> 3) & 1) * 8]);
    const int t = ks * 16 + 2 * qd;
    const float w0 = weight(t), w1 = weight(t + 1), w8 = weight(t + 8), w9 = weight(t + 9);
    a[0] = scale_bf16x2(a[0], w0, w1);
    a[1] = scale_bf16x2(a[1], w0, w1);
    a[2] = scale_bf16x2(a[2], w8, w9);
    a[3] = scale_bf16x2(a[3], w8, w9);
#pragma unroll
    for (int nt2 = 0; nt2 < N / 16; ++nt2) {
      uint32_t bk[4];  // k [token, d_state] is B = [k-dim, n]: transposing load
      ldsm_x4_trans(
          bk, &s.k[(ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * Smem::kQK + nt2 * 16 + (lane >> 4) * 8]);
      mma_bf16(H[2 * nt2], a, bk[0], bk[1]);
      mma_bf16(H[2 * nt2 + 1], a, bk[2], bk[3]);
    }
  }
}

// The warp's 16 accumulator rows of a [head_dim, d_state] fp32 state in global memory.
template <int N>
__device__ void load_state_rows(const float* state, float (&H)[N / 8][4]) {
  const int lane = threadIdx.x & 31, row = (threadIdx.x >> 5) * 16 + (lane >> 2), col = 2 * (lane & 3);
#pragma unroll
  for (int nt = 0; nt < N / 8; ++nt) {
    const float2 lo = *reinterpret_cast<const float2*>(state + row * N + nt * 8 + col);
    const float2 hi = *reinterpret_cast<const float2*>(state + (row + 8) * N + nt * 8 + col);
    H[nt][0] = lo.x, H[nt][1] = lo.y, H[nt][2] = hi.x, H[nt][3] = hi.y;
  }
}
template <int N>
__device__ void store_state_rows(float* state, const float (&H)[N / 8][4]) {
  const int lane = threadIdx.x & 31, row = (threadIdx.x >> 5) * 16 + (lane >> 2), col = 2 * (lane & 3);
#pragma unroll
  for (int nt = 0; nt < N / 8; ++nt) {
    *reinterpret_cast<float2*>(state + row * N + nt * 8 + col) = make_float2(H[nt][0], H[nt][1]);
    *reinterpret_cast<float2*>(state + (row + 8) * N + nt * 8 + col) = make_float2(H[nt][2], H[nt][3]);
  }
}
// H_s: [head_dim, d_state + kPad] bf16 in shared memory.
template <int N>
__device__ void store_state_bf16(__nv_bfloat16* H_s, const float (&H)[N / 8][4]) {
  constexpr int kQK = N + kPad;
  const int lane = threadIdx.x & 31, row = (threadIdx.x >> 5) * 16 + (lane >> 2), col = 2 * (lane & 3);
#pragma unroll
  for (int nt = 0; nt < N / 8; ++nt) {
    *reinterpret_cast<uint32_t*>(&H_s[row * kQK + nt * 8 + col]) = pack_bf16(H[nt][0], H[nt][1]);
    *reinterpret_cast<uint32_t*>(&H_s[(row + 8) * kQK + nt * 8 + col]) = pack_bf16(H[nt][2], H[nt][3]);
  }
}

// Workspace: states [batch, n_heads, n_chunks, head_dim, d_state] fp32, then the chunk decays
// [batch, n_heads, n_chunks] (Σ adt over the chunk, log2 units).
struct Workspace {
  float* states;
  float* chunk_decay;
};
__host__ __device__ inline int n_chunks(const ChunkedScanParams& p) {
  return (p.seq_len + p.state_chunk - 1) / p.state_chunk;
}
__host__ __device__ inline size_t states_elems(const ChunkedScanParams& p) {
  return size_t(p.batch) * p.n_heads * n_chunks(p) * p.head_dim * p.d_state;
}
__host__ __device__ inline Workspace workspace_of(const ChunkedScanParams& p) {
  float* states = static_cast<float*>(p.workspace);
  return {states, states + states_elems(p)};
}
__device__ inline int64_t chunk_index(const ChunkedScanParams& p, const HeadCoords& hc) {
  return (int64_t(hc.b) * p.n_heads + hc.h) * n_chunks(p) + hc.c;
}

// Runs compute(stage, t0, has_next) over the 64-row tiles (64/R tokens) of the block's chunk, then
// after(has_next) past the closing barrier. One stage: latency is hidden by the 3 blocks per SM
// (a second stage, tried, cost a block per SM and gained nothing).
template <int R, class Stage, class Compute, class After>
__device__ void pipeline_tiles(const ChunkedScanParams& p, const HeadCoords& hc, Stage& s, Compute&& compute,
                               After&& after) {
  constexpr int kTokens = kTile / R;
  const int t_begin = hc.c * p.state_chunk, t_end = min(t_begin + p.state_chunk, p.seq_len);
  const bool coef_warp = threadIdx.x < 32;
  for (int t0 = t_begin; t0 < t_end; t0 += kTokens) {
    load_tile_async<R>(p, hc, t0, s);
    if (coef_warp) store_coefficients<R>(p, hc.h, load_coefficients<R>(p, hc, t0), s);
    cp_async_wait<0>();
    if constexpr (R > 1) scale_x_rows<R>(p, hc.h, s);
    __syncthreads();
    const bool has_next = t0 + kTokens < t_end;
    compute(s, t0, has_next);
    __syncthreads();  // the stage may be refilled; H (bf16) may be rewritten
    after(has_next);
  }
}

// ---- Kernel 1: local state of each chunk, S_c = Σ_s exp(a_end − a_s)·σ_s·x_s k_sᵀ (from zero) ----
template <int P, int N, int R>
__global__ void __launch_bounds__(kThreads) chunk_state_kernel(const ChunkedScanParams p) {
  using Stage = TileStage<P, N, false>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Stage& stage = *reinterpret_cast<Stage*>(smem_raw);
  const HeadCoords hc{static_cast<int>(blockIdx.z), static_cast<int>(blockIdx.x),
                      static_cast<int>(blockIdx.y)};
  float H[N / 8][4] = {};
  float log_decay = 0.0f;
  pipeline_tiles<R>(
      p, hc, stage,
      [&](const Stage& s, int, bool) {
        update_state<P, N>(s, H);
        log_decay += s.a2[kTile - 1];
      },
      [](bool) {});
  const Workspace ws = workspace_of(p);
  const int64_t ci = chunk_index(p, hc);
  store_state_rows<N>(ws.states + ci * P * N, H);
  if (threadIdx.x == 0) ws.chunk_decay[ci] = log_decay;
}

// ---- Kernel 2: H_0 = initial state (+ pending β term); states[c] ← H_c; H_{c+1} = e^{A_c} H_c + S_c ----
template <int P, int N, int R>
__global__ void __launch_bounds__(256) state_passing_kernel(const ChunkedScanParams p) {
  const int e = (blockIdx.x * blockDim.x + threadIdx.x) * 4;  // first of 4 state elements
  if (e >= P * N) return;
  const int b = blockIdx.z, h = blockIdx.y, row = e / N, col = e % N;
  float4 H = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (p.initial_state) {
    H = *reinterpret_cast<const float4*>(p.initial_state + b * p.initial_state_batch_stride +
                                         h * p.initial_state_head_stride + e);
  }
  if (p.k_prev) {  // S_in = S_prev + Δ_0(1 − λ_0)·Σ_r v_prev,r k_prev,rᵀ (§3.5); α_0 comes with exp(a_0)
    const int64_t at = b * p.dt_batch_stride + h * p.dt_head_stride;
    const float pending =
        p.dt[at] * (1.0f - p.trap[at]) * p.v_prev[b * p.v_prev_batch_stride + h * p.v_prev_head_stride + row];
#pragma unroll
    for (int r = 0; r < R; ++r) {  // v_prev,r = v_prev ⊙ mimo_x[h, r] (MIMO)
      const float w =
          R == 1 ? pending : pending * p.mimo_x[h * p.mimo_x_head_stride + r * p.mimo_x_rank_stride + row];
      const float* kp =
          p.k_prev + b * p.k_prev_batch_stride + h * p.k_prev_head_stride + r * p.k_prev_rank_stride + col;
      H.x += w * kp[0], H.y += w * kp[1], H.z += w * kp[2], H.w += w * kp[3];
    }
  }
  const Workspace ws = workspace_of(p);
  const int nc = n_chunks(p);
  float* states = ws.states + (int64_t(b) * p.n_heads + h) * nc * P * N + e;
  const float* decays = ws.chunk_decay + (int64_t(b) * p.n_heads + h) * nc;
  constexpr int kAhead = 4;  // loads in flight per thread
  for (int c0 = 0; c0 < nc; c0 += kAhead) {
    float4 S[kAhead];
    float decay[kAhead];
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      if (c0 + i < nc) {
        S[i] = __ldcs(reinterpret_cast<const float4*>(states + int64_t(c0 + i) * P * N));
        decay[i] = exp2f(decays[c0 + i]);
      }
    }
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      if (c0 + i < nc) {
        *reinterpret_cast<float4*>(states + int64_t(c0 + i) * P * N) = H;
        H.x = decay[i] * H.x + S[i].x, H.y = decay[i] * H.y + S[i].y;
        H.z = decay[i] * H.z + S[i].z, H.w = decay[i] * H.w + S[i].w;
      }
    }
  }
  if (p.final_state) {
    *reinterpret_cast<float4*>(p.final_state + b * p.final_state_batch_stride +
                               h * p.final_state_head_stride + e) = H;
  }
}

// y for the warp's 16 tile rows: exp(a_t)·q_t·H_in + Σ_s coef(t, s)·(q_t·k_s)·x_s + D·x_t, then
// written as bf16 through the warp's own q rows (16-byte stores). A warp's 16 rows hold whole
// tokens (R divides 16), so the token-block-causal scores also need only the tiles st ≤ warp.
template <int P, int N, int R>
__device__ void tile_output(const ChunkedScanParams& p, const HeadCoords& hc, int t0,
                            TileStage<P, N, true>& s, const __nv_bfloat16* H_s) {
  using Smem = TileStage<P, N, true>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, qd = lane & 3;
  const int r0 = warp * 16;
  float acc[P / 8][4] = {};        // y rows [r0, r0+16) × head_dim
  float score[kTile / 8][4] = {};  // (q·k) rows [r0, r0+16) × tile tokens (causal: st ≤ warp)
#pragma unroll
  for (int ks = 0; ks < N / 16; ++ks) {
    uint32_t a[4];
    ldsm_x4(a, &s.q[(r0 + (lane & 15)) * Smem::kQK + ks * 16 + (lane >> 4) * 8]);
#pragma unroll
    for (int pt = 0; pt < P / 16; ++pt) {
      uint32_t bh[4];
      ldsm_x4(bh,
              &H_s[(pt * 16 + (lane & 7) + (lane >> 4) * 8) * Smem::kQK + ks * 16 + ((lane >> 3) & 1) * 8]);
      mma_bf16(acc[2 * pt], a, bh[0], bh[1]);
      mma_bf16(acc[2 * pt + 1], a, bh[2], bh[3]);
    }
#pragma unroll
    for (int st = 0; st < kTile / 16; ++st) {
      if (st > warp) continue;
      uint32_t bk[4];
      ldsm_x4(bk,
              &s.k[(st * 16 + (lane & 7) + (lane >> 4) * 8) * Smem::kQK + ks * 16 + ((lane >> 3) & 1) * 8]);
      mma_bf16(score[2 * st], a, bk[0], bk[1]);
      mma_bf16(score[2 * st + 1], a, bk[2], bk[3]);
    }
  }
  const int t_lo = r0 + g, t_hi = t_lo + 8;
  const float a_lo = s.a2[t_lo], a_hi = s.a2[t_hi];
  const float e_lo = exp2f(a_lo), e_hi = exp2f(a_hi);
#pragma unroll
  for (int nt = 0; nt < P / 8; ++nt) {
    acc[nt][0] *= e_lo, acc[nt][1] *= e_lo, acc[nt][2] *= e_hi, acc[nt][3] *= e_hi;
  }
  // coef(t, s) = exp(a_t − a_s)·σ_s (s < t), γ_t (s = t), 0 (s > t), comparing the rows' tokens;
  // selects, no branches.
  constexpr int kShift = log2_of(R);
  const float gamma_lo = s.gamma[t_lo], gamma_hi = s.gamma[t_hi];
  auto coef = [&](int t, float a_t, float gamma_t, int u) {
    const float decayed = exp2f(fminf(a_t - s.a2[u], 0.0f)) * s.sigma[u];
    return (u >> kShift) < (t >> kShift) ? decayed : ((u >> kShift) == (t >> kShift) ? gamma_t : 0.0f);
  };
#pragma unroll
  for (int st = 0; st < kTile / 16; ++st) {
    if (st > warp) continue;
    uint32_t a[4];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float(&c)[4] = score[2 * st + half];
      const int u = st * 16 + half * 8 + 2 * qd;
      a[2 * half] = pack_bf16(c[0] * coef(t_lo, a_lo, gamma_lo, u), c[1] * coef(t_lo, a_lo, gamma_lo, u + 1));
      a[2 * half + 1] =
          pack_bf16(c[2] * coef(t_hi, a_hi, gamma_hi, u), c[3] * coef(t_hi, a_hi, gamma_hi, u + 1));
    }
#pragma unroll
    for (int pt = 0; pt < P / 16; ++pt) {
      uint32_t bx[4];  // x [token, head_dim] is B = [k-dim, n]: transposing load
      ldsm_x4_trans(
          bx, &s.x[(st * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * Smem::kX + pt * 16 + (lane >> 4) * 8]);
      mma_bf16(acc[2 * pt], a, bx[0], bx[1]);
      mma_bf16(acc[2 * pt + 1], a, bx[2], bx[3]);
    }
  }
  const float D = p.D ? p.D[hc.h] : 0.0f;
  __syncwarp();  // every lane is done reading the warp's q rows: they now stage y
#pragma unroll
  for (int nt = 0; nt < P / 8; ++nt) {
    const int col = nt * 8 + 2 * qd;
    const float2 x_lo =
        __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.x[t_lo * Smem::kX + col]));
    const float2 x_hi =
        __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.x[t_hi * Smem::kX + col]));
    *reinterpret_cast<uint32_t*>(&s.q[t_lo * Smem::kQK + col]) =
        pack_bf16(acc[nt][0] + D * x_lo.x, acc[nt][1] + D * x_lo.y);
    *reinterpret_cast<uint32_t*>(&s.q[t_hi * Smem::kQK + col]) =
        pack_bf16(acc[nt][2] + D * x_hi.x, acc[nt][3] + D * x_hi.y);
  }
  __syncwarp();
  constexpr int kVecP = P / 8, kRowStep = 32 / kVecP, kTokStep = kRowStep / R;  // a lane's column is fixed
  static_assert(kRowStep % R == 0, "y rows of a lane keep their rank");
  const int row = r0 + lane / kVecP, col = (lane % kVecP) * 8, tok = t0 + (row >> kShift);
  __nv_bfloat16* y_row = p.y + hc.b * p.y_batch_stride + hc.h * p.y_head_stride + tok * p.y_seq_stride +
                         (row % R) * p.y_rank_stride + col;
#pragma unroll
  for (int j = 0; j < 16 / kRowStep; ++j) {
    if (tok + j * kTokStep < p.seq_len) {
      *reinterpret_cast<uint4*>(y_row) =
          *reinterpret_cast<const uint4*>(&s.q[(row + j * kRowStep) * Smem::kQK + col]);
    }
    y_row += kTokStep * p.y_seq_stride;
  }
}

// ---- Kernel 3: outputs of each chunk from its entering state, carried through the 64-row tiles ----
template <int P, int N, int R>
__global__ void __launch_bounds__(kThreads) chunk_scan_kernel(const ChunkedScanParams p) {
  using Stage = TileStage<P, N, true>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Stage& stage = *reinterpret_cast<Stage*>(smem_raw);
  __nv_bfloat16* H_s = reinterpret_cast<__nv_bfloat16*>(smem_raw + sizeof(Stage));
  const HeadCoords hc{static_cast<int>(blockIdx.z), static_cast<int>(blockIdx.x),
                      static_cast<int>(blockIdx.y)};
  float H[N / 8][4];
  load_state_rows<N>(workspace_of(p).states + chunk_index(p, hc) * P * N, H);
  store_state_bf16<N>(H_s, H);
  pipeline_tiles<R>(
      p, hc, stage,
      [&](Stage& s, int t0, bool has_next) {
        tile_output<P, N, R>(p, hc, t0, s, H_s);
        if (has_next) update_state<P, N>(s, H);
      },
      [&](bool has_next) {
        if (has_next) store_state_bf16<N>(H_s, H);
      });
}

template <int P, int N, int R>
void launch(const ChunkedScanParams& p, cudaStream_t stream) {
  const dim3 chunk_grid(p.n_heads, n_chunks(p), p.batch);
  const size_t smem_state = sizeof(TileStage<P, N, false>);
  const size_t smem_scan = sizeof(TileStage<P, N, true>) + P * (N + kPad) * sizeof(__nv_bfloat16);
  static const bool smem_opt_in = [&] {  // once per process (current device)
    CUDA_CHECK(cudaFuncSetAttribute(chunk_state_kernel<P, N, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem_state)));
    CUDA_CHECK(cudaFuncSetAttribute(chunk_scan_kernel<P, N, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem_scan)));
    return true;
  }();
  (void)smem_opt_in;
  chunk_state_kernel<P, N, R><<<chunk_grid, kThreads, smem_state, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  const dim3 pass_grid((P * N / 4 + 255) / 256, p.n_heads, p.batch);
  state_passing_kernel<P, N, R><<<pass_grid, 256, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  chunk_scan_kernel<P, N, R><<<chunk_grid, kThreads, smem_scan, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

}  // namespace

void check_chunked_scan_dims(int head_dim, int d_state, const char* op, int rank) {
  if (!(head_dim == 64 && d_state == 128)) {
    throw_error(ErrorCode::unsupported, op,
                ": tensor-core kernel compiled for head_dim 64, d_state 128; got head_dim ", head_dim,
                ", d_state ", d_state);
  }
  if (rank != 1 && rank != 2 && rank != 4)
    throw_error(ErrorCode::unsupported, op, ": tensor-core kernel compiled for rank 1, 2 or 4; got ", rank);
}

size_t chunked_scan_workspace_bytes(const ChunkedScanParams& p) {
  return (states_elems(p) + size_t(p.batch) * p.n_heads * n_chunks(p)) * sizeof(float);
}

void chunked_scan_fwd(const ChunkedScanParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.seq_len == 0) return;
  check_chunked_scan_dims(p.head_dim, p.d_state, "chunked_scan_fwd", p.rank);
  if (p.state_chunk <= 0 || p.state_chunk * p.rank % kTile != 0 ||
      (p.rank > 1 && (p.weights != ScanWeights::trapezoid || !p.mimo_x))) {
    throw_error(ErrorCode::invalid_argument, "chunked_scan_fwd: state_chunk ", p.state_chunk, " at rank ",
                p.rank, " (a multiple of ", kTile,
                "/rank tokens; rank > 1 is the trapezoid scan with mimo_x)");
  }
  if (n_chunks(p) > 65535 || p.batch > 65535) {  // grid y and z limits
    throw_error(ErrorCode::unsupported, "chunked_scan_fwd: ", n_chunks(p), " chunks of ", p.state_chunk,
                " tokens and batch ", p.batch, " (at most 65535 each)");
  }
  if (p.rank == 4) {
    launch<64, 128, 4>(p, stream);
  } else if (p.rank == 2) {
    launch<64, 128, 2>(p, stream);
  } else {
    launch<64, 128, 1>(p, stream);
  }
}

// ---- Mamba-2 front end ----

namespace {

ChunkedScanParams engine_params(const SsdFastParams& s) {
  ChunkedScanParams p;
  p.batch = s.batch, p.seq_len = s.seq_len, p.n_heads = s.n_heads, p.head_dim = s.head_dim;
  p.d_state = s.d_state, p.heads_per_group = s.n_heads / s.n_groups, p.state_chunk = s.chunk_size;
  p.weights = ScanWeights::ssd;
  p.x = s.x, p.x_batch_stride = s.x_batch_stride, p.x_seq_stride = s.x_seq_stride,
  p.x_head_stride = s.x_head_stride;
  p.q = s.C, p.q_batch_stride = s.C_batch_stride, p.q_seq_stride = s.C_seq_stride,
  p.q_group_stride = s.C_group_stride;
  p.k = s.B, p.k_batch_stride = s.B_batch_stride, p.k_seq_stride = s.B_seq_stride,
  p.k_group_stride = s.B_group_stride;
  p.dt = s.dt, p.dt_batch_stride = s.dt_batch_stride, p.dt_seq_stride = s.dt_seq_stride;
  p.dt_head_stride = s.dt_head_stride, p.A = s.A, p.D = s.D;
  p.initial_state = s.initial_state, p.initial_state_batch_stride = s.initial_state_batch_stride;
  p.initial_state_head_stride = s.initial_state_head_stride;
  p.final_state = s.final_state, p.final_state_batch_stride = s.final_state_batch_stride;
  p.final_state_head_stride = s.final_state_head_stride;
  p.y = s.y, p.y_batch_stride = s.y_batch_stride, p.y_seq_stride = s.y_seq_stride,
  p.y_head_stride = s.y_head_stride;
  p.workspace = s.workspace;
  return p;
}

void check_vec_rows(const void* ptr, std::initializer_list<int64_t> strides, const char* name) {
  if (!ptr) throw_error(ErrorCode::invalid_argument, "ssd_fast_fwd: ", name, " is null");
  bool ok = aligned16(ptr);
  for (int64_t s : strides) ok = ok && s % 8 == 0;
  if (!ok)
    throw_error(ErrorCode::invalid_argument, "ssd_fast_fwd: ", name,
                " rows must be 16-byte aligned (strides multiples of 8)");
}

void check_state(const float* ptr, int64_t batch_stride, int64_t head_stride, const char* name) {
  if (ptr && !(aligned16(ptr) && batch_stride % 4 == 0 && head_stride % 4 == 0)) {
    throw_error(ErrorCode::invalid_argument, "ssd_fast_fwd: ", name,
                " must be 16-byte aligned (strides multiples of 4)");
  }
}

}  // namespace

size_t ssd_fast_workspace_bytes(const SsdFastParams& s) {
  if (s.n_groups <= 0 || s.chunk_size <= 0) return 0;
  return chunked_scan_workspace_bytes(engine_params(s));
}

void ssd_fast_fwd(const SsdFastParams& s, cudaStream_t stream) {
  if (s.batch < 0 || s.seq_len < 0 || s.n_heads <= 0 || s.n_groups <= 0 || s.n_heads % s.n_groups != 0) {
    throw_error(ErrorCode::shape, "ssd_fast_fwd: batch ", s.batch, ", seq_len ", s.seq_len, ", n_heads ",
                s.n_heads, ", n_groups ", s.n_groups, " (n_heads must be a multiple of n_groups)");
  }
  check_chunked_scan_dims(s.head_dim, s.d_state, "ssd_fast_fwd");
  if (s.chunk_size <= 0 || s.chunk_size % kTile != 0) {
    throw_error(ErrorCode::unsupported, "ssd_fast_fwd: chunk_size ", s.chunk_size,
                " must be a positive multiple of ", kTile);
  }
  if (s.batch == 0 || s.seq_len == 0) return;
  check_vec_rows(s.x, {s.x_batch_stride, s.x_seq_stride, s.x_head_stride}, "x");
  check_vec_rows(s.B, {s.B_batch_stride, s.B_seq_stride, s.B_group_stride}, "B");
  check_vec_rows(s.C, {s.C_batch_stride, s.C_seq_stride, s.C_group_stride}, "C");
  check_vec_rows(s.y, {s.y_batch_stride, s.y_seq_stride, s.y_head_stride}, "y");
  if (!s.dt || !s.A) throw_error(ErrorCode::invalid_argument, "ssd_fast_fwd: dt and A are required");
  check_state(s.initial_state, s.initial_state_batch_stride, s.initial_state_head_stride, "initial_state");
  check_state(s.final_state, s.final_state_batch_stride, s.final_state_head_stride, "final_state");
  const size_t need = ssd_fast_workspace_bytes(s);
  if (!s.workspace || !aligned16(s.workspace) || s.workspace_bytes < need) {
    throw_error(ErrorCode::invalid_argument, "ssd_fast_fwd: workspace of ", s.workspace_bytes,
                " bytes, need ", need, " (16-byte aligned)");
  }
  chunked_scan_fwd(engine_params(s), stream);
}

}  // namespace mamba::ops::cuda
