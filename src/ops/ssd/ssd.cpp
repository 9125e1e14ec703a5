// CPU SSD. Work item = (batch, head); inside it, chunks of `chunk_size` tokens use the quadratic
// (attention-like) form, and the state is passed between chunks (SPEC §2.3 steps 1-4).
#include "ops/ssd/ssd.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"

namespace mamba::ops {

namespace {

struct Dims {
  int64_t batch, seq_len, n_heads, head_dim, n_groups, d_state, heads_per_group;
  bool d_per_channel;
};

Dims check_args(const SsdArgs& a, const Tensor& state) {
  Dims d{};
  d.batch = a.x.size(0);
  d.seq_len = a.x.size(1);
  d.n_heads = a.x.size(2);
  d.head_dim = a.x.size(3);
  d.n_groups = a.B.size(2);
  d.d_state = a.B.size(3);
  MAMBA_CHECK(a.x.is_contiguous() && a.B.is_contiguous() && a.C.is_contiguous() && a.dt.is_contiguous());
  MAMBA_CHECK(a.B.shape() == a.C.shape() && d.n_heads % d.n_groups == 0);
  MAMBA_CHECK(a.dt.shape() == (Shape{d.batch, d.seq_len, d.n_heads}));
  MAMBA_CHECK(state.is_contiguous() && state.shape() == (Shape{d.batch, d.n_heads, d.head_dim, d.d_state}));
  d.heads_per_group = d.n_heads / d.n_groups;
  d.d_per_channel = a.D.numel() == d.n_heads * d.head_dim;
  MAMBA_CHECK(d.d_per_channel || a.D.numel() == d.n_heads);
  return d;
}

}  // namespace

Tensor ssd_ref(const SsdArgs& a, Tensor& state) {
  const Dims d = check_args(a, state);
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
        float acc = 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          Sp[n] = decay * Sp[n] + dx * Bv[n];
          acc += Cv[n] * Sp[n];
        }
        yv[p] = acc + (d.d_per_channel ? Dp[h * P + p] : Dp[h]) * xv[p];
      }
    }
  });
  return y;
}

Tensor ssd_fwd(const SsdArgs& a, Tensor& state) {
  const Dims d = check_args(a, state);
  Tensor y = Tensor::empty(a.x.shape());
  const float *xp = a.x.f32(), *dtp = a.dt.f32(), *Ap = a.A.f32(), *Bp = a.B.f32(), *Cp = a.C.f32();
  const float* Dp = a.D.f32();
  float *yp = y.f32(), *sp = state.f32();
  const int64_t P = d.head_dim, N = d.d_state, H = d.n_heads, G = d.n_groups;
  // Chunks of at most 64 tokens on CPU: the same math for any chunk size (SPEC §2.3 differs
  // only in rounding), and the quadratic intra-chunk work stays below the state updates'.
  const int64_t Q = std::clamp<int64_t>(a.chunk_size, 1, 64);
  parallel_for(d.batch * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H, g = h / d.heads_per_group;
    float* S = sp + bh * P * N;  // [head_dim, d_state], the state entering the current chunk
    std::vector<float> cs(Q), W(Q * Q), yc(Q * P);
    for (int64_t c0 = 0; c0 < d.seq_len; c0 += Q) {
      const int64_t len = std::min(Q, d.seq_len - c0);
      auto B_at = [&](int64_t t) { return Bp + ((b * d.seq_len + c0 + t) * G + g) * N; };
      auto C_at = [&](int64_t t) { return Cp + ((b * d.seq_len + c0 + t) * G + g) * N; };
      auto x_at = [&](int64_t t) { return xp + ((b * d.seq_len + c0 + t) * H + h) * P; };
      auto dt_at = [&](int64_t t) { return dtp[(b * d.seq_len + c0 + t) * H + h]; };
      // 1. inclusive cumsum of dt·A inside the chunk.
      float run = 0.0f;
      for (int64_t t = 0; t < len; ++t) cs[t] = run += dt_at(t) * Ap[h];
      // 2. W[t,s] = (C_t·B_s)·exp(cs_t − cs_s)·dt_s for s ≤ t (the intra-chunk "attention").
      for (int64_t t = 0; t < len; ++t) {
        const float* Cv = C_at(t);
        for (int64_t s = 0; s <= t; ++s) {
          const float* Bv = B_at(s);
          float dot = 0.0f;
          for (int64_t n = 0; n < N; ++n) dot += Cv[n] * Bv[n];
          W[t * Q + s] = dot * std::exp(std::min(cs[t] - cs[s], 0.0f)) * dt_at(s);
        }
      }
      // 3. y_t = exp(cs_t)·(C_t·S_in) + Σ_s W[t,s]·x_s + D·x_t.
      for (int64_t t = 0; t < len; ++t) {
        const float* Cv = C_at(t);
        const float e = std::exp(cs[t]);
        float* yt = yc.data() + t * P;
        for (int64_t p = 0; p < P; ++p) {
          const float* Sp = S + p * N;
          float acc = 0.0f;
          for (int64_t n = 0; n < N; ++n) acc += Cv[n] * Sp[n];
          yt[p] = e * acc;
        }
        for (int64_t s = 0; s <= t; ++s) {
          const float w = W[t * Q + s];
          const float* xs = x_at(s);
          for (int64_t p = 0; p < P; ++p) yt[p] += w * xs[p];
        }
        const float* xt = x_at(t);
        float* out = yp + ((b * d.seq_len + c0 + t) * H + h) * P;
        for (int64_t p = 0; p < P; ++p) out[p] = yt[p] + (d.d_per_channel ? Dp[h * P + p] : Dp[h]) * xt[p];
      }
      // 4. S_out = exp(cs_last)·S_in + Σ_s exp(cs_last − cs_s)·dt_s·x_s·B_sᵀ.
      const float last = cs[len - 1], e_last = std::exp(last);
      for (int64_t i = 0; i < P * N; ++i) S[i] *= e_last;
      for (int64_t s = 0; s < len; ++s) {
        const float w = std::exp(std::min(last - cs[s], 0.0f)) * dt_at(s);
        const float* xs = x_at(s);
        const float* Bv = B_at(s);
        for (int64_t p = 0; p < P; ++p) {
          const float wx = w * xs[p];
          float* Sp = S + p * N;
          for (int64_t n = 0; n < N; ++n) Sp[n] += wx * Bv[n];
        }
      }
    }
  });
  return y;
}

}  // namespace mamba::ops
