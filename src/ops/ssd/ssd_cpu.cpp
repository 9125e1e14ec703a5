// CPU SSD kernels. Work item = (batch, head); inside it, chunks of `chunk_size` tokens use the
// quadratic (attention-like) form, and the state is passed between chunks (SPEC §2.3 steps 1-4).
// The front (ssd.cpp) has checked every tensor before these run.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/ssd/ssd_params.h"

namespace mamba::ops::cpu {

namespace {

// s = decay·s + dx·b over one state row; returns Σ c·s. In kLanes partial sums: one running sum
// is a chain of dependent adds the compiler may not reorder (it was 29% of a Q4_K decode); these
// vectorize (the pointers restrict: the state never overlaps B or C).
float state_row_step(float* __restrict s, const float* __restrict b, const float* __restrict c,
                     int64_t n_state, float decay, float dx) {
  constexpr int64_t kLanes = 16;
  float part[kLanes] = {};
  int64_t n = 0;
  for (; n + kLanes <= n_state; n += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) {
      const float v = decay * s[n + k] + dx * b[n + k];
      s[n + k] = v;
      part[k] += c[n + k] * v;
    }
  float acc = 0.0f;
  for (; n < n_state; ++n) {
    s[n] = decay * s[n] + dx * b[n];
    acc += c[n] * s[n];
  }
  for (float v : part) acc += v;
  return acc;
}

}  // namespace

// The sequential recurrence (ssd_ref, and ssd_fwd's one-token step).
Tensor ssd_recurrent(const SsdArgs& a, Tensor& state, const SsdDims& d) {
  Tensor y = Tensor::empty(a.x.shape());
  const float *xp = a.x.f32(), *dtp = a.dt.f32(), *Ap = a.A.f32(), *Bp = a.B.f32(), *Cp = a.C.f32();
  const float* Dp = a.D.f32();
  float *yp = y.f32(), *sp = state.f32();
  const int64_t P = d.head_dim, N = d.d_state, H = d.n_heads, G = d.n_groups;
  parallel_for(d.batch * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H, g = h / d.heads_per_group;
    float* S = sp + bh * P * N;
    for (int64_t t = 0; t < d.seq_len; ++t) {
      const int64_t bt = b * d.seq_len + t;
      const float dt = dtp[bt * H + h], decay = std::exp(dt * Ap[h]);
      const float* Bv = Bp + (bt * G + g) * N;
      const float* Cv = Cp + (bt * G + g) * N;
      const float* xv = xp + (bt * H + h) * P;
      float* yv = yp + (bt * H + h) * P;
      for (int64_t p = 0; p < P; ++p) {
        float* Sp = S + p * N;
        const float dx = dt * xv[p];
        const float acc = state_row_step(Sp, Bv, Cv, N, decay, dx);
        yv[p] = acc + (d.d_per_channel ? Dp[h * P + p] : Dp[h]) * xv[p];
      }
    }
  });
  return y;
}

// Decay factors below this are taken as zero in the chunked form: their terms lie far below the
// f32 resolution of the sums they join (2^-24 of the leading term), and kept they make subnormal
// operands in the GEMMs, which then run 3-4x slower (a random-weight 130M Mamba-2's prefill: the
// chunked scan took 3x the recurrence's time).
namespace {
constexpr float kNegligibleDecay = 1e-30f;
float flush_negligible(float decay) {
  return decay < kNegligibleDecay ? 0.0f : decay;
}
}  // namespace

// Per (batch, head), per chunk of Q tokens, with small single-threaded GEMMs (OpenBLAS's OpenMP
// build runs serially inside our parallel region):
//   W = (C·Bᵀ) ⊙ decay ⊙ dt_s (lower triangle), decay[t,s] = Π_{s<k≤t} exp(dt_k·A)
//   Y = W·X + diag(exp(cs_t))·C·S_inᵀ + D·X;  S_out = exp(cs_last)·S_in + (w ⊙ X)ᵀ·B.
Tensor ssd_chunked(const SsdArgs& a, Tensor& state, const SsdDims& d) {
  Tensor y = Tensor::empty(a.x.shape());
  const float *xp = a.x.f32(), *dtp = a.dt.f32(), *Ap = a.A.f32(), *Bp = a.B.f32(), *Cp = a.C.f32();
  const float* Dp = a.D.f32();
  float *yp = y.f32(), *sp = state.f32();
  const int64_t P = d.head_dim, N = d.d_state, H = d.n_heads, G = d.n_groups, L = d.seq_len;
  // Chunks of at most 64 tokens on CPU: the same math for any chunk size (SPEC §2.3 differs
  // only in rounding), and the quadratic intra-chunk work stays below the state updates'.
  const int64_t Q = std::clamp<int64_t>(a.chunk_size, 1, 64);
  const int ldx = static_cast<int>(H * P), ldb = static_cast<int>(G * N);
  parallel_for(d.batch * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H, g = h / d.heads_per_group;
    float* S = sp + bh * P * N;  // [head_dim, d_state], the state entering the current chunk
    std::vector<float> alpha(Q), cs(Q), W(Q * Q), xw(Q * P);
    for (int64_t c0 = 0; c0 < L; c0 += Q) {
      const int64_t len = std::min(Q, L - c0);
      const int n_len = static_cast<int>(len);
      const float* Bc = Bp + ((b * L + c0) * G + g) * N;  // rows strided by G·N
      const float* Cc = Cp + ((b * L + c0) * G + g) * N;
      const float* Xc = xp + ((b * L + c0) * H + h) * P;  // rows strided by H·P
      float* Yc = yp + ((b * L + c0) * H + h) * P;
      const float* dtc = dtp + (b * L + c0) * H + h;  // stride H
      float run = 0.0f;
      for (int64_t t = 0; t < len; ++t) {
        alpha[t] = std::exp(dtc[t * H] * Ap[h]);
        cs[t] = run += dtc[t * H] * Ap[h];
      }
      // W = C·Bᵀ, then the decay-and-dt weights on the lower triangle (zero above).
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_len, n_len, static_cast<int>(N), 1.0f, Cc, ldb,
                  Bc, ldb, 0.0f, W.data(), static_cast<int>(Q));
      for (int64_t t = 0; t < len; ++t) {
        float* Wt = W.data() + t * Q;
        float decay = 1.0f;
        int64_t s = t;
        for (; s >= 0 && decay >= kNegligibleDecay; --s) {
          Wt[s] *= decay * dtc[s * H];
          decay *= alpha[s];
        }
        for (; s >= 0; --s) Wt[s] = 0.0f;
        for (s = t + 1; s < len; ++s) Wt[s] = 0.0f;
      }
      // Y = C·S_inᵀ (scaled per row by exp(cs_t) below) + W·X.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_len, static_cast<int>(P), static_cast<int>(N),
                  1.0f, Cc, ldb, S, static_cast<int>(N), 0.0f, Yc, ldx);
      for (int64_t t = 0; t < len; ++t) {
        const float e = flush_negligible(std::exp(cs[t]));
        for (int64_t p = 0; p < P; ++p) Yc[t * ldx + p] *= e;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_len, static_cast<int>(P), n_len, 1.0f,
                  W.data(), static_cast<int>(Q), Xc, ldx, 1.0f, Yc, ldx);
      for (int64_t t = 0; t < len; ++t)
        for (int64_t p = 0; p < P; ++p)
          Yc[t * ldx + p] += (d.d_per_channel ? Dp[h * P + p] : Dp[h]) * Xc[t * ldx + p];
      // S_out = exp(cs_last)·S_in + Σ_s (exp(cs_last − cs_s)·dt_s·x_s) B_sᵀ.
      float w_last = 1.0f;
      for (int64_t s = len - 1; s >= 0; --s) {
        const float w = flush_negligible(w_last) * dtc[s * H];
        for (int64_t p = 0; p < P; ++p) xw[s * P + p] = w * Xc[s * ldx + p];
        w_last *= alpha[s];
      }
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(P), static_cast<int>(N), n_len,
                  1.0f, xw.data(), static_cast<int>(P), Bc, ldb, flush_negligible(std::exp(cs[len - 1])), S,
                  static_cast<int>(N));
    }
  });
  return y;
}

}  // namespace mamba::ops::cpu
