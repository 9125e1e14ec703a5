// Backward of SSD on CPU. Work item = (batch, head): the forward recurrence is re-run keeping the
// state entering every chunk of `chunk_size` tokens; then chunks are visited in reverse, each
// re-expanded to its per-token states, and the reverse recurrence carries dS [head_dim, d_state].
// B and C are shared by the heads of a group: their gradients go to per-head buffers summed at
// the end, as do dA and dD over the batch.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/ssd/ssd_params.h"

namespace mamba::ops::cpu {

namespace {

// The (batch, head) slices of the inputs and of the per-item outputs.
struct HeadSlice {
  const float *x, *dt, *B, *C, *dy;  // rows at stride H·P (x, dy), H (dt), G·N (B, C)
  float A;
  const float* D;   // [head_dim] (per channel) or [1]
  float *dx, *ddt;  // like x, dt
  float *dB, *dC;   // [seq_len, d_state] this head's share
  double dA;
  std::vector<double> dD;  // [head_dim] or [1]
};

// S ← exp(dt_t·A)·S + dt_t·x_t·B_tᵀ for token t.
void advance(const HeadSlice& s, const SsdBwdSizes& z, int64_t t, float* S) {
  const float dt = s.dt[t * z.H], decay = std::exp(dt * s.A);
  const float *xv = s.x + t * z.H * z.P, *Bv = s.B + t * z.G * z.N;
  for (int64_t p = 0; p < z.P; ++p) {
    const float dx = dt * xv[p];
    for (int64_t n = 0; n < z.N; ++n) S[p * z.N + n] = decay * S[p * z.N + n] + dx * Bv[n];
  }
}

// One token of the reverse recurrence; dS enters as the gradient from the future (already
// multiplied by α_{t+1}) and leaves multiplied by α_t.
void reverse_token(HeadSlice& s, const SsdBwdSizes& z, int64_t t, const float* S_t, const float* S_prev,
                   float* dS) {
  const int64_t P = z.P, N = z.N;
  const float dt = s.dt[t * z.H], decay = std::exp(dt * s.A);
  const float *xv = s.x + t * z.H * P, *Bv = s.B + t * z.G * N, *Cv = s.C + t * z.G * N,
              *dyv = s.dy + t * z.H * P;
  float* dxv = s.dx + t * z.H * P;
  float sum_sS = 0.0f, sum_xB = 0.0f;  // Σ dS⊙S_{t−1}, Σ dS⊙(x Bᵀ)
  for (int64_t p = 0; p < P; ++p) {
    float* dSp = dS + p * N;
    const float* Sp = S_t + p * N;
    float dSB = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      s.dC[t * N + n] += dyv[p] * Sp[n];
      dSp[n] += dyv[p] * Cv[n];
      dSB += dSp[n] * Bv[n];
      if (S_prev) sum_sS += dSp[n] * S_prev[p * N + n];
      s.dB[t * N + n] += dt * dSp[n] * xv[p];
    }
    const float Dc = z.d_per_channel ? s.D[p] : s.D[0];
    dxv[p] = Dc * dyv[p] + dt * dSB;
    s.dD[z.d_per_channel ? p : 0] += static_cast<double>(dyv[p]) * xv[p];
    sum_xB += dSB * xv[p];
  }
  s.ddt[t * z.H] = s.A * decay * sum_sS + sum_xB;
  s.dA += static_cast<double>(dt) * decay * sum_sS;
  for (int64_t i = 0; i < P * N; ++i) dS[i] *= decay;
}

void head_bwd(HeadSlice& s, const SsdBwdSizes& z) {
  const int64_t PN = z.P * z.N, n_chunks = (z.L + z.Q - 1) / z.Q;
  std::vector<float> entry(static_cast<size_t>(n_chunks * PN), 0.0f);  // state entering each chunk
  std::vector<float> S(static_cast<size_t>(PN), 0.0f);
  for (int64_t t = 0; t < z.L; ++t) {
    if (t % z.Q == 0) std::copy(S.begin(), S.end(), entry.begin() + (t / z.Q) * PN);
    advance(s, z, t, S.data());
  }
  std::vector<float> states(static_cast<size_t>(z.Q * PN)), dS(static_cast<size_t>(PN), 0.0f);
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t c0 = c * z.Q, len = std::min(z.Q, z.L - c0);
    const float* S_in = entry.data() + c * PN;
    std::copy(S_in, S_in + PN, states.begin());
    for (int64_t i = 0; i < len; ++i) {
      if (i > 0) std::copy(states.begin() + (i - 1) * PN, states.begin() + i * PN, states.begin() + i * PN);
      advance(s, z, c0 + i, states.data() + i * PN);
    }
    for (int64_t i = len - 1; i >= 0; --i) {
      const float* S_prev = i > 0 ? states.data() + (i - 1) * PN : (c0 > 0 ? S_in : nullptr);
      reverse_token(s, z, c0 + i, states.data() + i * PN, S_prev, dS.data());
    }
  }
}

}  // namespace

SsdGrads ssd_bwd(const SsdArgs& a, const Tensor& dy, const SsdBwdSizes& z) {
  const int64_t L = z.L, H = z.H, P = z.P, G = z.G, N = z.N, heads_per_group = H / G,
                nD = z.d_per_channel ? P : 1;
  SsdGrads g;
  g.dx = Tensor::empty(a.x.shape());
  g.ddt = Tensor::empty(a.dt.shape());
  std::vector<float> dB_heads(static_cast<size_t>(z.batch * H * L * N),
                              0.0f);  // [batch, n_heads, seq_len, d_state]
  std::vector<float> dC_heads(dB_heads.size(), 0.0f);
  std::vector<double> dA_part(static_cast<size_t>(z.batch * H)),
      dD_part(static_cast<size_t>(z.batch * H * nD));
  parallel_for(z.batch * H, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H, grp = h / heads_per_group;
    HeadSlice s{};
    s.x = a.x.f32() + b * L * H * P + h * P;
    s.dy = dy.f32() + b * L * H * P + h * P;
    s.dt = a.dt.f32() + b * L * H + h;
    s.B = a.B.f32() + b * L * G * N + grp * N;
    s.C = a.C.f32() + b * L * G * N + grp * N;
    s.A = a.A.f32()[h];
    s.D = a.D.f32() + (z.d_per_channel ? h * P : h);
    s.dx = g.dx.f32() + b * L * H * P + h * P;
    s.ddt = g.ddt.f32() + b * L * H + h;
    s.dB = dB_heads.data() + bh * L * N;
    s.dC = dC_heads.data() + bh * L * N;
    s.dD.assign(static_cast<size_t>(nD), 0.0);
    head_bwd(s, z);
    dA_part[bh] = s.dA;
    for (int64_t i = 0; i < nD; ++i) dD_part[bh * nD + i] = s.dD[i];
  });
  g.dB = Tensor::zeros(a.B.shape());
  g.dC = Tensor::zeros(a.C.shape());
  parallel_for(z.batch * L, [&](int64_t bt) {
    const int64_t b = bt / L, t = bt % L;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t src = ((b * H + h) * L + t) * N, dst = (bt * G + h / heads_per_group) * N;
      for (int64_t n = 0; n < N; ++n) {
        g.dB.f32()[dst + n] += dB_heads[src + n];
        g.dC.f32()[dst + n] += dC_heads[src + n];
      }
    }
  });
  g.dA = Tensor::zeros({H});
  g.dD = Tensor::zeros(a.D.shape());
  for (int64_t bh = 0; bh < z.batch * H; ++bh) {
    g.dA.f32()[bh % H] += static_cast<float>(dA_part[bh]);
    for (int64_t i = 0; i < nD; ++i)
      g.dD.f32()[(bh % H) * nD + i] += static_cast<float>(dD_part[bh * nD + i]);
  }
  return g;
}

}  // namespace mamba::ops::cpu
