// CPU Mamba-3 scan kernels. Work item = (batch, head). The reference and the step run the
// recurrence of SPEC §3.4 token by token; the forward runs the chunked form of §3.5 as small GEMMs
// whose rows are (token, rank) pairs. State layout is [head_dim, d_state]; the forward keeps it
// transposed. The front (mamba3_scan.cpp) has checked every tensor before these run.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "ops/mamba3_scan/mamba3_scan_params.h"

// The GEMM kernel is compiled for AVX-512, AVX2 and the baseline, picked at load time (GCC
// function multiversioning), so a portable build still runs the wide kernel.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MAMBA_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MAMBA_CPU_CLONES
#endif
// Helpers of a cloned function must be inlined into it to be compiled for the clone's target.
#define MAMBA_INLINE inline __attribute__((always_inline))

namespace mamba::ops::cpu {

namespace {

using Dims = Mamba3ScanDims;
constexpr int64_t kMaxRank = kMamba3MaxRank;

// One (batch, head) slice of every tensor of a call. Rows of q, k and y are (token, rank) pairs:
// row m = t·mimo_rank + r, at stride `qk_row` (q, k) or `xy_row` (x per token, y per row).
struct HeadView {
  const float* x;       // [seq_len, head_dim]              rows at xy_row
  const float* q;       // [seq_len·mimo_rank, d_state]     rows at qk_row
  const float* k;       // [seq_len·mimo_rank, d_state]     rows at qk_row
  const float* adt;     // [seq_len]                        at stride n_heads
  const float* dt;      // [seq_len]                        at stride n_heads
  const float* trap;    // [seq_len]                        at stride n_heads
  const float* mimo_x;  // [mimo_rank, head_dim], or null (SISO: v = x)
  float D;
  float* y;       // [seq_len·mimo_rank, head_dim]  rows at xy_row
  float* ssm;     // [head_dim, d_state]
  float* k_prev;  // [mimo_rank, d_state]           rows at qk_row
  float* v_prev;  // [head_dim]
  int64_t qk_row, xy_row;
};

HeadView head_view(const Mamba3ScanArgs& a, Mamba3ScanState& s, Tensor& y, const Dims& d, int64_t b,
                   int64_t h) {
  const int64_t H = d.n_heads, P = d.head_dim, N = d.d_state, R = d.mimo_rank, L = d.seq_len;
  HeadView v{};
  v.x = a.x.f32() + b * L * H * P + h * P;
  v.q = a.q.f32() + b * L * R * H * N + h * N;
  v.k = a.k.f32() + b * L * R * H * N + h * N;
  v.adt = a.adt.f32() + b * L * H + h;
  v.dt = a.dt.f32() + b * L * H + h;
  v.trap = a.trap.f32() + b * L * H + h;
  v.mimo_x = a.mimo_x.defined() ? a.mimo_x.f32() + h * R * P : nullptr;
  v.D = a.D.f32()[h];
  v.y = y.f32() + b * L * R * H * P + h * P;
  v.ssm = s.ssm.f32() + (b * H + h) * P * N;
  v.k_prev = s.k_prev.f32() + b * R * H * N + h * N;
  v.v_prev = s.v_prev.f32() + (b * H + h) * P;
  v.qk_row = H * N;
  v.xy_row = H * P;
  return v;
}

// State after the call (§3.5): k_prev = key of the last token (all ranks), v_prev = its raw x.
void save_last_token(const HeadView& v, const Dims& d) {
  const int64_t R = d.mimo_rank, last = d.seq_len - 1;
  for (int64_t r = 0; r < R; ++r) {
    std::memcpy(v.k_prev + r * v.qk_row, v.k + (last * R + r) * v.qk_row, d.d_state * sizeof(float));
  }
  std::memcpy(v.v_prev, v.x + last * v.xy_row, d.head_dim * sizeof(float));
}

// Row p of one token of the recurrence for a compile-time rank (1, 2 or 4): one pass over d_state
// applies S_p = α S_p + Σ_r (c_before[r] k_{t-1,r} + c_now[r] k_{t,r}) and accumulates the
// outputs dots[r] = S_p·q_r (scalar accumulators: omp simd keeps them in vector registers).
template <int64_t kRank>
MAMBA_INLINE void token_row(float* Sp, int64_t N, int64_t qk_row, float alpha, const float* c_before,
                            const float* c_now, const float* k_before, const float* k, const float* q,
                            float* dots) {
  static_assert(kRank == 1 || kRank == 2 || kRank == 4);
  float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
#pragma omp simd reduction(+ : acc0, acc1, acc2, acc3)
  for (int64_t n = 0; n < N; ++n) {
    float s = alpha * Sp[n];
#pragma GCC unroll 4
    for (int64_t r = 0; r < kRank; ++r)
      s += c_before[r] * k_before[r * qk_row + n] + c_now[r] * k[r * qk_row + n];
    Sp[n] = s;
    acc0 += s * q[n];
    if constexpr (kRank >= 2) acc1 += s * q[qk_row + n];
    if constexpr (kRank == 4) {
      acc2 += s * q[2 * qk_row + n];
      acc3 += s * q[3 * qk_row + n];
    }
  }
  const float acc[4] = {acc0, acc1, acc2, acc3};
  for (int64_t r = 0; r < kRank; ++r) dots[r] = acc[r];
}

// The same for any rank: a pass per rank, then a pass per output.
MAMBA_INLINE void token_row_any_rank(float* Sp, int64_t N, int64_t R, int64_t qk_row, float alpha,
                                     const float* c_before, const float* c_now, const float* k_before,
                                     const float* k, const float* q, float* dots) {
  for (int64_t r = 0; r < R; ++r) {  // α is folded into the pass of rank 0
    const float decay = r == 0 ? alpha : 1.0f;
    const float *kb = k_before + r * qk_row, *kt = k + r * qk_row;
    for (int64_t n = 0; n < N; ++n) Sp[n] = decay * Sp[n] + c_before[r] * kb[n] + c_now[r] * kt[n];
  }
  for (int64_t r = 0; r < R; ++r) {
    const float* qr = q + r * qk_row;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t n = 0; n < N; ++n) acc += Sp[n] * qr[n];
    dots[r] = acc;
  }
}

// One token of the recurrence (§3.4), S [head_dim, d_state] updated in place:
//   S = α S + β Σ_r v_{t-1,r} k_{t-1,r}ᵀ + γ Σ_r v_{t,r} k_{t,r}ᵀ,   y_r = S q_r + D v_r
// k_before/x_before: the previous token's key rows (at qk_row) and raw x. Allocation-free.
MAMBA_CPU_CLONES void recurrence_token(const HeadView& v, const Dims& d, int64_t t, const float* k_before,
                                       const float* x_before, float* S) {
  const int64_t P = d.head_dim, N = d.d_state, R = d.mimo_rank;
  const float dt = v.dt[t * d.n_heads], lambda = v.trap[t * d.n_heads];
  const float alpha = std::exp(v.adt[t * d.n_heads]);
  const float beta = (1.0f - lambda) * dt * alpha, gamma = lambda * dt;
  const float* x = v.x + t * v.xy_row;
  const float* k = v.k + t * R * v.qk_row;
  const float* q = v.q + t * R * v.qk_row;
  float* y = v.y + t * R * v.xy_row;
  for (int64_t p = 0; p < P; ++p) {
    float scale[kMaxRank], c_before[kMaxRank], c_now[kMaxRank], dots[kMaxRank];
    for (int64_t r = 0; r < R; ++r) {  // v_{t,r}[p] = x_t[p]·mimo_x[r, p]
      scale[r] = v.mimo_x ? v.mimo_x[r * P + p] : 1.0f;
      c_before[r] = beta * x_before[p] * scale[r];
      c_now[r] = gamma * x[p] * scale[r];
    }
    float* Sp = S + p * N;
    switch (R) {
      case 1:
        token_row<1>(Sp, N, v.qk_row, alpha, c_before, c_now, k_before, k, q, dots);
        break;
      case 2:
        token_row<2>(Sp, N, v.qk_row, alpha, c_before, c_now, k_before, k, q, dots);
        break;
      case 4:
        token_row<4>(Sp, N, v.qk_row, alpha, c_before, c_now, k_before, k, q, dots);
        break;
      default:
        token_row_any_rank(Sp, N, R, v.qk_row, alpha, c_before, c_now, k_before, k, q, dots);
    }
    for (int64_t r = 0; r < R; ++r) y[r * v.xy_row + p] = dots[r] + v.D * x[p] * scale[r];
  }
}

// ---- GEMM kernel for the chunked form: C[i, j] += s_i · Σ_k A[i, k]·B[k, j], row-major with row
// strides; tiles of 4 rows × 32 columns accumulate in registers. ----

using Vec16 = float __attribute__((vector_size(64)));  // split to the target's vector width
constexpr int64_t kTileRows = 4, kTileCols = 32;

// C[i, j0:j0+16] += s·acc, through memcpy (unaligned rows; no vector-typed function signatures,
// whose ABI differs between the clones).
MAMBA_INLINE void add_scaled16(float* c, float s, const Vec16& acc) {
  Vec16 v;
  std::memcpy(&v, c, sizeof v);
  v += s * acc;
  std::memcpy(c, &v, sizeof v);
}

template <int64_t kRows>
MAMBA_INLINE void gemm_tile(int64_t depth, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                            int64_t ldc, const float* row_scale) {
  Vec16 acc[kRows][2] = {};
  for (int64_t kk = 0; kk < depth; ++kk) {
    Vec16 b0, b1;
    std::memcpy(&b0, B + kk * ldb, sizeof b0);
    std::memcpy(&b1, B + kk * ldb + 16, sizeof b1);
#pragma GCC unroll 4
    for (int64_t i = 0; i < kRows; ++i) {
      const float a = A[i * lda + kk];
      acc[i][0] += a * b0;
      acc[i][1] += a * b1;
    }
  }
#pragma GCC unroll 4
  for (int64_t i = 0; i < kRows; ++i) {
    const float s = row_scale ? row_scale[i] : 1.0f;
    add_scaled16(C + i * ldc, s, acc[i][0]);
    add_scaled16(C + i * ldc + 16, s, acc[i][1]);
  }
}

// Columns past the last full tile (odd head_dim, chunk tails): one row at a time.
MAMBA_INLINE void gemm_tail(int64_t rows, int64_t cols, int64_t depth, const float* A, int64_t lda,
                            const float* B, int64_t ldb, float* C, int64_t ldc, const float* row_scale) {
  float acc[kTileCols];
  for (int64_t i = 0; i < rows; ++i) {
    std::fill(acc, acc + cols, 0.0f);
    for (int64_t kk = 0; kk < depth; ++kk) {
      const float a = A[i * lda + kk];
      for (int64_t j = 0; j < cols; ++j) acc[j] += a * B[kk * ldb + j];
    }
    const float s = row_scale ? row_scale[i] : 1.0f;
    for (int64_t j = 0; j < cols; ++j) C[i * ldc + j] += s * acc[j];
  }
}

MAMBA_CPU_CLONES void gemm_acc(int64_t m, int64_t n, int64_t depth, const float* A, int64_t lda,
                               const float* B, int64_t ldb, float* C, int64_t ldc, const float* row_scale) {
  const int64_t n_full = n - n % kTileCols;
  for (int64_t i0 = 0; i0 < m; i0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, m - i0);
    const float* Ai = A + i0 * lda;
    float* Ci = C + i0 * ldc;
    const float* si = row_scale ? row_scale + i0 : nullptr;
    for (int64_t j0 = 0; j0 < n_full; j0 += kTileCols) {
      switch (rows) {
        case 4:
          gemm_tile<4>(depth, Ai, lda, B + j0, ldb, Ci + j0, ldc, si);
          break;
        case 3:
          gemm_tile<3>(depth, Ai, lda, B + j0, ldb, Ci + j0, ldc, si);
          break;
        case 2:
          gemm_tile<2>(depth, Ai, lda, B + j0, ldb, Ci + j0, ldc, si);
          break;
        default:
          gemm_tile<1>(depth, Ai, lda, B + j0, ldb, Ci + j0, ldc, si);
          break;
      }
    }
    if (n_full < n) gemm_tail(rows, n - n_full, depth, Ai, lda, B + n_full, ldb, Ci + n_full, ldc, si);
  }
}

// ---- Chunked forward (§3.5) ----

// Per-(batch, head) work buffers, sized for a full chunk of Q tokens (M = Q·R rows).
struct ChunkScratch {
  int64_t chunk_size, rows_max;
  std::vector<float> storage;
  float* k_t;         // [d_state, M]       keys of the chunk, transposed
  float* v;           // [M, head_dim]      v_{t,r} = x_t ⊙ mimo_x[r]
  float* v_weighted;  // [M, head_dim]      exp(a_last − a_s)·σ_s·v_s, for the state update
  float* scores;      // [M, M]             decayed, masked q·k
  float* coef;        // [Q, M]             exp(a_t − a_s)·σ_s (s < t), γ_t (s = t), 0 (s > t)
  float* decay;       // [Q, Q]             exp(a_t − a_s) for s ≤ t
  float* row_decay;   // [M]                exp(a_t) of the row's token
  float* sigma;       // [Q]                γ_t + Δ_{t+1}(1 − λ_{t+1})
  float* gamma;       // [Q]

  ChunkScratch(const Dims& d, int64_t Q) : chunk_size(Q), rows_max(Q * d.mimo_rank) {
    const int64_t M = rows_max, P = d.head_dim, N = d.d_state;
    storage.resize(N * M + 2 * M * P + M * M + Q * M + Q * Q + M + 2 * Q);
    float* next = storage.data();
    auto take = [&next](int64_t count) { return std::exchange(next, next + count); };
    k_t = take(N * M);
    v = take(M * P);
    v_weighted = take(M * P);
    scores = take(M * M);
    coef = take(Q * M);
    decay = take(Q * Q);
    row_decay = take(M);
    sigma = take(Q);
    gamma = take(Q);
  }
};

// Decays and the folded β scale of the chunk [c0, c0 + len) (§3.5). The decay between tokens,
// exp(a_t − a_s) with a the inclusive cumsum of adt, is formed as the running product of the
// α_u = exp(adt_u), s < u ≤ t (one exp per token, the same products as the recurrence). The β of
// token t+1 is moved onto token t's key (σ_t) only when t+1 is in this call; a later call takes
// it from the state's (k_prev, v_prev) instead.
MAMBA_INLINE void chunk_coefficients(const HeadView& v, const Dims& d, int64_t c0, int64_t len,
                                     ChunkScratch& w) {
  const int64_t H = d.n_heads, R = d.mimo_rank, M = len * R, Q = w.chunk_size;
  float entry_decay = 1.0f;
  for (int64_t t = 0; t < len; ++t) {
    const int64_t g = c0 + t;
    const float alpha = std::exp(v.adt[g * H]);
    float* decay = w.decay + t * Q;  // decay[s] = exp(a_t − a_s), s ≤ t
    for (int64_t s = 0; s + 1 < t; ++s) decay[s] = w.decay[(t - 1) * Q + s] * alpha;
    if (t > 0) decay[t - 1] = alpha;
    decay[t] = 1.0f;
    entry_decay *= alpha;
    for (int64_t r = 0; r < R; ++r) w.row_decay[t * R + r] = entry_decay;
    w.gamma[t] = v.trap[g * H] * v.dt[g * H];
    const float next_beta = g + 1 < d.seq_len ? v.dt[(g + 1) * H] * (1.0f - v.trap[(g + 1) * H]) : 0.0f;
    w.sigma[t] = w.gamma[t] + next_beta;
  }
  for (int64_t t = 0; t < len; ++t) {
    float* row = w.coef + t * M;
    for (int64_t s = 0; s < len; ++s) {
      const float c = s < t ? w.decay[t * Q + s] * w.sigma[s] : (s == t ? w.gamma[t] : 0.0f);
      for (int64_t r = 0; r < R; ++r) row[s * R + r] = c;
    }
  }
}

// Loads the chunk's keys (transposed) and values, and starts y = D·v.
MAMBA_INLINE void chunk_load(const HeadView& v, const Dims& d, int64_t c0, int64_t len, ChunkScratch& w) {
  const int64_t R = d.mimo_rank, P = d.head_dim, N = d.d_state, M = len * R;
  for (int64_t m = 0; m < M; ++m) {
    const int64_t t = c0 + m / R, r = m % R;
    const float* x = v.x + t * v.xy_row;
    const float* k = v.k + (c0 * R + m) * v.qk_row;
    float* vm = w.v + m * P;
    float* y = v.y + (c0 * R + m) * v.xy_row;
    for (int64_t p = 0; p < P; ++p) vm[p] = v.mimo_x ? x[p] * v.mimo_x[r * P + p] : x[p];
    for (int64_t p = 0; p < P; ++p) y[p] = v.D * vm[p];
    for (int64_t n = 0; n < N; ++n) w.k_t[n * M + m] = k[n];
  }
}

// Starts loading rows [begin, end) of the next work item (the next head of this chunk, or the
// first head of the next chunk) while this one computes: a head's rows are short and n_heads
// rows apart, which the hardware prefetchers do not follow.
MAMBA_INLINE void prefetch_rows(const HeadView& v, const Dims& d, int64_t begin, int64_t end) {
  constexpr int64_t kLine = 64 / sizeof(float);
  const int64_t R = d.mimo_rank;
  end = std::min(end, d.seq_len * R);
  for (int64_t m = begin; m < end; ++m) {
    for (int64_t n = 0; n < d.d_state; n += kLine) {
      __builtin_prefetch(v.q + m * v.qk_row + n);
      __builtin_prefetch(v.k + m * v.qk_row + n);
    }
    for (int64_t p = 0; p < d.head_dim; p += kLine) __builtin_prefetch(v.y + m * v.xy_row + p, 1);
  }
  for (int64_t t = (begin + R - 1) / R; t * R < end; ++t) {  // tokens whose first row is in range
    for (int64_t p = 0; p < d.head_dim; p += kLine) __builtin_prefetch(v.x + t * v.xy_row + p);
  }
}

// y += exp(a_t)·S_in q (inter-chunk) + Σ_{s ≤ t} coef[t, s]·(q_t·k_s) v_s (intra-chunk), then
// S_out = exp(a_last)·S_in + Σ_s exp(a_last − a_s)·σ_s·v_s k_sᵀ.
MAMBA_INLINE void chunk_compute(const HeadView& v, const Dims& d, int64_t c0, int64_t len, ChunkScratch& w,
                                float* state_t, const HeadView& next, int64_t next_row) {
  const int64_t R = d.mimo_rank, P = d.head_dim, N = d.d_state, M = len * R;
  const float* q = v.q + c0 * R * v.qk_row;
  float* y = v.y + c0 * R * v.xy_row;
  gemm_acc(M, P, N, q, v.qk_row, state_t, P, y, v.xy_row, w.row_decay);
  for (int64_t i0 = 0; i0 < M; i0 += kTileRows) {
    // Rows i0.. see tokens up to t_hi; the score block is computed to a whole tile and masked.
    const int64_t rows = std::min(kTileRows, M - i0), t_hi = (i0 + rows - 1) / R;
    prefetch_rows(next, d, next_row + i0, next_row + i0 + rows);
    const int64_t cols = (t_hi + 1) * R;
    const int64_t cols_tiled = std::min(M, (cols + kTileCols - 1) / kTileCols * kTileCols);
    float* scores = w.scores + i0 * M;
    for (int64_t i = 0; i < rows; ++i) std::fill(scores + i * M, scores + i * M + cols_tiled, 0.0f);
    gemm_acc(rows, cols_tiled, N, q + i0 * v.qk_row, v.qk_row, w.k_t, M, scores, M, nullptr);
    for (int64_t i = 0; i < rows; ++i) {
      const float* coef = w.coef + ((i0 + i) / R) * M;
      for (int64_t j = 0; j < cols; ++j) scores[i * M + j] *= coef[j];
    }
    gemm_acc(rows, P, cols, scores, M, w.v, P, y + i0 * v.xy_row, v.xy_row, nullptr);
  }
  const float* decay_last = w.decay + (len - 1) * w.chunk_size;  // exp(a_last − a_s)
  for (int64_t m = 0; m < M; ++m) {
    const float weight = decay_last[m / R] * w.sigma[m / R];
    for (int64_t p = 0; p < P; ++p) w.v_weighted[m * P + p] = weight * w.v[m * P + p];
  }
  const float entry_decay = w.row_decay[M - 1];  // exp(a_last)
  for (int64_t i = 0; i < N * P; ++i) state_t[i] *= entry_decay;
  gemm_acc(N, P, M, w.k_t, M, w.v_weighted, P, state_t, P, nullptr);
}

// Entry state of the first chunk (§3.5): S_prev + Δ_0(1 − λ_0)·Σ_r v_prev,r k_prev,rᵀ, transposed;
// α_0 is applied by the first chunk's exp(a_0) together with S_prev.
void load_state(const HeadView& v, const Dims& d, float* state_t) {
  const int64_t R = d.mimo_rank, P = d.head_dim, N = d.d_state;
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t n = 0; n < N; ++n) state_t[n * P + p] = v.ssm[p * N + n];
  }
  const float pending = v.dt[0] * (1.0f - v.trap[0]);
  for (int64_t r = 0; r < R; ++r) {
    const float* k = v.k_prev + r * v.qk_row;
    for (int64_t n = 0; n < N; ++n) {
      float* row = state_t + n * P;
      const float kn = pending * k[n];
      for (int64_t p = 0; p < P; ++p) row[p] += kn * v.v_prev[p] * (v.mimo_x ? v.mimo_x[r * P + p] : 1.0f);
    }
  }
}

// The chunk loop over a thread's work items (batch, head), chunk-major: every head of a chunk is
// done before the next chunk, so the heads share the pages of their interleaved rows (one TLB
// walk per page and chunk instead of one per head). states: [n_items, d_state, head_dim].
MAMBA_CPU_CLONES void scan_chunks(const std::vector<HeadView>& views, const Dims& d, int64_t Q,
                                  ChunkScratch& w, float* states) {
  const int64_t n_items = static_cast<int64_t>(views.size()), R = d.mimo_rank;
  for (int64_t c0 = 0; c0 < d.seq_len; c0 += Q) {
    const int64_t len = std::min(Q, d.seq_len - c0);
    for (int64_t i = 0; i < n_items; ++i) {
      const bool last_item = i + 1 == n_items;
      const HeadView& next = views[last_item ? 0 : i + 1];
      chunk_coefficients(views[i], d, c0, len, w);
      chunk_load(views[i], d, c0, len, w);
      chunk_compute(views[i], d, c0, len, w, states + i * d.d_state * d.head_dim, next,
                    (last_item ? c0 + len : c0) * R);
    }
  }
}

// One token on the CPU (mamba3_scan_step, and mamba3_scan_fwd's one-token call).
void scan_one_token(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y, const Dims& d) {
  parallel_for(d.batch * d.n_heads, [&](int64_t bh) {
    const HeadView v = head_view(args, state, y, d, bh / d.n_heads, bh % d.n_heads);
    recurrence_token(v, d, 0, v.k_prev, v.v_prev, v.ssm);
    save_last_token(v, d);
  });
}

}  // namespace

void mamba3_scan_chunked(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y, const Dims& d) {
  const int64_t Q = std::min(args.chunk_size, d.seq_len), P = d.head_dim, N = d.d_state;
  const int64_t n_items = d.batch * d.n_heads;
  const int64_t n_groups = std::min<int64_t>(n_items, num_threads());
  parallel_for(n_groups, [&](int64_t g) {
    std::vector<HeadView> views;
    for (int64_t bh = n_items * g / n_groups; bh < n_items * (g + 1) / n_groups; ++bh) {
      views.push_back(head_view(args, state, y, d, bh / d.n_heads, bh % d.n_heads));
    }
    std::vector<float> states(views.size() * N * P);  // [n_items, d_state, head_dim]
    for (size_t i = 0; i < views.size(); ++i) load_state(views[i], d, states.data() + i * N * P);
    ChunkScratch w(d, Q);
    scan_chunks(views, d, Q, w, states.data());
    // The last token has σ = γ, so the final chunk state is exactly S_{T-1}.
    for (size_t i = 0; i < views.size(); ++i) {
      const float* state_t = states.data() + i * N * P;
      for (int64_t p = 0; p < P; ++p) {
        for (int64_t n = 0; n < N; ++n) views[i].ssm[p * N + n] = state_t[n * P + p];
      }
      save_last_token(views[i], d);
    }
  });
}

void mamba3_scan_recurrent(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y, const Dims& d) {
  parallel_for(d.batch * d.n_heads, [&](int64_t bh) {
    const HeadView v = head_view(args, state, y, d, bh / d.n_heads, bh % d.n_heads);
    // Token -1 is the state's (k_prev, v_prev); they are overwritten only after the loop.
    for (int64_t t = 0; t < d.seq_len; ++t) {
      const float* k_before = t == 0 ? v.k_prev : v.k + (t - 1) * d.mimo_rank * v.qk_row;
      const float* x_before = t == 0 ? v.v_prev : v.x + (t - 1) * v.xy_row;
      recurrence_token(v, d, t, k_before, x_before, v.ssm);
    }
    save_last_token(v, d);
  });
}

void mamba3_scan_one_token(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y, const Dims& d) {
  scan_one_token(args, state, y, d);
}

}  // namespace mamba::ops::cpu
