// Backward of the Mamba-3 scan on CPU (SPEC §3.4), from a zero state. Work item = (batch, head).
// With U_t = Σ_r v_{t,r} k_{t,r}ᵀ the forward is S_t = α_t S_{t−1} + β_t U_{t−1} + γ_t U_t,
// y_{t,r} = S_t q_{t,r} + D v_{t,r}; the reverse pass carries dS_t and forms
//   dq = S_tᵀ dy,  dU_t = γ_t dS_t + β_{t+1} dS_{t+1},  dα = ⟨dS_t, S_{t−1}⟩,
//   dβ = ⟨dS_t, U_{t−1}⟩,  dγ = ⟨dS_t, U_t⟩.
// The front (mamba3_scan_bwd.cpp) has checked the shapes.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/mamba3_scan/mamba3_scan_params.h"

namespace mamba::ops::cpu {

namespace {

using Sizes = Mamba3ScanBwdSizes;

// One (batch, head) slice. Rows of q, k (and their grads) are (token, rank) pairs at stride H·N;
// x, dx at stride H·P per token; y rows (token, rank) at stride H·P; adt, dt, trap at stride H.
struct HeadSlice {
  const float *x, *q, *k, *adt, *dt, *trap, *dy, *mimo_x;  // mimo_x [rank, head_dim] or null
  float D;
  float *dx, *dq, *dk, *dadt, *ddt, *dtrap;
  double dD;
  std::vector<double> dmimo_x;  // [rank, head_dim]
  std::vector<float> G;         // [d_state] scratch: one row of dU_t
};

struct Coefs {
  float alpha, beta, gamma;
};

Coefs coefs(const HeadSlice& s, const Sizes& z, int64_t t) {
  if (t >= z.L) return {0.0f, 0.0f, 0.0f};
  const float dt = s.dt[t * z.H], lambda = s.trap[t * z.H], alpha = std::exp(s.adt[t * z.H]);
  return {alpha, (1.0f - lambda) * dt * alpha, lambda * dt};
}

// v_{t,r}[p] (x itself for SISO).
inline float value(const HeadSlice& s, const Sizes& z, int64_t t, int64_t r, int64_t p) {
  return s.x[t * z.H * z.P + p] * (s.mimo_x ? s.mimo_x[r * z.P + p] : 1.0f);
}

inline const float* key(const HeadSlice& s, const Sizes& z, int64_t t, int64_t r) {
  return s.k + (t * z.R + r) * z.H * z.N;
}

// S ← α_t S + β_t U_{t−1} + γ_t U_t.
void advance(const HeadSlice& s, const Sizes& z, int64_t t, float* S) {
  const Coefs c = coefs(s, z, t);
  for (int64_t p = 0; p < z.P; ++p) {
    float* Sp = S + p * z.N;
    for (int64_t n = 0; n < z.N; ++n) Sp[n] *= c.alpha;
    for (int64_t r = 0; r < z.R; ++r) {
      const float* kt = key(s, z, t, r);
      const float vg = c.gamma * value(s, z, t, r, p);
      for (int64_t n = 0; n < z.N; ++n) Sp[n] += vg * kt[n];
      if (t == 0) continue;
      const float* kb = key(s, z, t - 1, r);
      const float vb = c.beta * value(s, z, t - 1, r, p);
      for (int64_t n = 0; n < z.N; ++n) Sp[n] += vb * kb[n];
    }
  }
}

// Reverse step at token t. dS_next: total gradient of S_{t+1} (zero past the end); on return
// dS_cur holds the total gradient of S_t. S_prev is null for t = 0 (zero state).
void reverse_token(HeadSlice& s, const Sizes& z, int64_t t, const float* S_t, const float* S_prev,
                   const float* dS_next, float* dS_cur) {
  const int64_t P = z.P, N = z.N, R = z.R, HP = z.H * P, HN = z.H * z.N;
  const Coefs c = coefs(s, z, t), next = coefs(s, z, t + 1);
  const float* dy = s.dy + t * R * HP;  // rows r at stride H·P
  const float* q = s.q + t * R * HN;
  float* dq = s.dq + t * R * HN;
  float* dk = s.dk + t * R * HN;
  for (int64_t r = 0; r < R; ++r) {
    std::fill(dq + r * HN, dq + r * HN + N, 0.0f);
    std::fill(dk + r * HN, dk + r * HN + N, 0.0f);
  }
  float d_alpha = 0.0f, d_beta = 0.0f, d_gamma = 0.0f;
  float* G = s.G.data();
  for (int64_t p = 0; p < P; ++p) {
    float* dSp = dS_cur + p * N;
    const float* dSn = dS_next + p * N;
    const float* Sp = S_t + p * N;
    for (int64_t n = 0; n < N; ++n) dSp[n] = next.alpha * dSn[n];
    for (int64_t r = 0; r < R; ++r) {
      const float g = dy[r * HP + p];
      const float* qr = q + r * HN;
      float* dqr = dq + r * HN;
      for (int64_t n = 0; n < N; ++n) {
        dSp[n] += g * qr[n];
        dqr[n] += g * Sp[n];
      }
    }
    if (S_prev)
      for (int64_t n = 0; n < N; ++n) d_alpha += dSp[n] * S_prev[p * N + n];
    for (int64_t n = 0; n < N; ++n) G[n] = c.gamma * dSp[n] + next.beta * dSn[n];
    float dx = 0.0f;
    for (int64_t r = 0; r < R; ++r) {
      const float* kt = key(s, z, t, r);
      const float v = value(s, z, t, r, p), g = dy[r * HP + p];
      float Gk = 0.0f, dSk = 0.0f;
      for (int64_t n = 0; n < N; ++n) {
        Gk += G[n] * kt[n];
        dSk += dSp[n] * kt[n];
        dk[r * HN + n] += v * G[n];
      }
      d_gamma += v * dSk;
      if (t > 0) {
        const float* kb = key(s, z, t - 1, r);
        float dSkb = 0.0f;
        for (int64_t n = 0; n < N; ++n) dSkb += dSp[n] * kb[n];
        d_beta += value(s, z, t - 1, r, p) * dSkb;
      }
      const float dv = Gk + s.D * g;  // d loss / d v_{t,r}[p]
      s.dD += static_cast<double>(g) * v;
      const float x = s.x[t * HP + p];
      if (s.mimo_x) {
        dx += dv * s.mimo_x[r * P + p];
        s.dmimo_x[r * P + p] += static_cast<double>(dv) * x;
      } else {
        dx += dv;
      }
    }
    s.dx[t * HP + p] = dx;
  }
  const float dt = s.dt[t * z.H], lambda = s.trap[t * z.H];
  s.dadt[t * z.H] = d_alpha * c.alpha + d_beta * c.beta;
  s.ddt[t * z.H] = d_beta * (1.0f - lambda) * c.alpha + d_gamma * lambda;
  s.dtrap[t * z.H] = (d_gamma - d_beta * c.alpha) * dt;
}

void head_bwd(HeadSlice& s, const Sizes& z) {
  const int64_t PN = z.P * z.N, n_chunks = (z.L + z.Q - 1) / z.Q;
  std::vector<float> entry(static_cast<size_t>(n_chunks * PN), 0.0f);  // S entering each chunk
  std::vector<float> S(static_cast<size_t>(PN), 0.0f);
  for (int64_t t = 0; t < z.L; ++t) {
    if (t % z.Q == 0) std::copy(S.begin(), S.end(), entry.begin() + (t / z.Q) * PN);
    advance(s, z, t, S.data());
  }
  std::vector<float> states(static_cast<size_t>(z.Q * PN));
  std::vector<float> dS_next(static_cast<size_t>(PN), 0.0f), dS_cur(static_cast<size_t>(PN));
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t c0 = c * z.Q, len = std::min(z.Q, z.L - c0);
    const float* S_in = entry.data() + c * PN;
    for (int64_t i = 0; i < len; ++i) {
      const float* from = i > 0 ? states.data() + (i - 1) * PN : S_in;
      std::copy(from, from + PN, states.begin() + i * PN);
      advance(s, z, c0 + i, states.data() + i * PN);
    }
    for (int64_t i = len - 1; i >= 0; --i) {
      const float* S_prev = i > 0 ? states.data() + (i - 1) * PN : (c0 > 0 ? S_in : nullptr);
      reverse_token(s, z, c0 + i, states.data() + i * PN, S_prev, dS_next.data(), dS_cur.data());
      std::swap(dS_next, dS_cur);
    }
  }
}

}  // namespace

Mamba3ScanGrads mamba3_scan_bwd(const Mamba3ScanArgs& a, const Tensor& dy, const Sizes& z) {
  const int64_t B = z.batch, L = z.L, R = z.R, H = z.H, P = z.P, N = z.N;
  Mamba3ScanGrads g;
  g.dx = Tensor::empty(a.x.shape());
  g.dq = Tensor::empty(a.q.shape());
  g.dk = Tensor::empty(a.k.shape());
  g.dadt = Tensor::empty(a.adt.shape());
  g.ddt = Tensor::empty(a.adt.shape());
  g.dtrap = Tensor::empty(a.adt.shape());
  std::vector<double> dD_part(static_cast<size_t>(B * H)), dmx_part(static_cast<size_t>(B * H * R * P));
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    HeadSlice s{};
    s.x = a.x.f32() + b * L * H * P + h * P;
    s.q = a.q.f32() + b * L * R * H * N + h * N;
    s.k = a.k.f32() + b * L * R * H * N + h * N;
    s.adt = a.adt.f32() + b * L * H + h;
    s.dt = a.dt.f32() + b * L * H + h;
    s.trap = a.trap.f32() + b * L * H + h;
    s.dy = dy.f32() + b * L * R * H * P + h * P;
    s.mimo_x = a.mimo_x.defined() ? a.mimo_x.f32() + h * R * P : nullptr;
    s.D = a.D.f32()[h];
    s.dx = g.dx.f32() + b * L * H * P + h * P;
    s.dq = g.dq.f32() + b * L * R * H * N + h * N;
    s.dk = g.dk.f32() + b * L * R * H * N + h * N;
    s.dadt = g.dadt.f32() + b * L * H + h;
    s.ddt = g.ddt.f32() + b * L * H + h;
    s.dtrap = g.dtrap.f32() + b * L * H + h;
    s.dmimo_x.assign(static_cast<size_t>(R * P), 0.0);
    s.G.resize(static_cast<size_t>(N));
    head_bwd(s, z);
    dD_part[bh] = s.dD;
    std::copy(s.dmimo_x.begin(), s.dmimo_x.end(), dmx_part.begin() + bh * R * P);
  });
  g.dD = Tensor::zeros({H});
  if (a.mimo_x.defined()) g.dmimo_x = Tensor::zeros({H, R, P});
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t h = bh % H;
    g.dD.f32()[h] += static_cast<float>(dD_part[bh]);
    if (a.mimo_x.defined())
      for (int64_t i = 0; i < R * P; ++i)
        g.dmimo_x.f32()[h * R * P + i] += static_cast<float>(dmx_part[bh * R * P + i]);
  }
  return g;
}

}  // namespace mamba::ops::cpu
