// CPU Mamba-3 gates: per (batch) sequential over tokens for the running angle, per head inside.
// The front (mamba3_gates.cpp) has checked every tensor before these run.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/mamba3_gates/mamba3_gates_params.h"

namespace mamba::ops::cpu {

namespace {

constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;

// RMSNorm over each of `rows` groups of n values (eps 1e-5, §3.3 item 4).
void rms_rows(const float* x, const float* w, int64_t rows, int64_t n, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; ++i) ss += x[r * n + i] * x[r * n + i];
    const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(n) + 1e-5f);
    for (int64_t i = 0; i < n; ++i) out[r * n + i] = x[r * n + i] * rstd * w[i];
  }
}

// Rotation of S pairs by φ (§3.3 item 7).
void rotate(float* v, const float* phi, int64_t S, int64_t d_state, bool half_split) {
  const int64_t half = d_state / 2;
  for (int64_t i = 0; i < S; ++i) {
    const int64_t i0 = half_split ? i : 2 * i, i1 = half_split ? i + half : 2 * i + 1;
    const float cs = std::cos(phi[i]), sn = std::sin(phi[i]);
    const float x0 = v[i0], x1 = v[i1];
    v[i0] = x0 * cs - x1 * sn;
    v[i1] = x0 * sn + x1 * cs;
  }
}

}  // namespace

void mamba3_prepare_fwd(const Mamba3PrepareSizes& p, const Tensor& proj, const Mamba3Gates& g, Tensor& angle,
                        Mamba3ScanArgs& a) {
  const int64_t batch = p.batch, seq_len = p.seq_len, width = p.width;
  const int64_t H = p.H, R = p.R, G = p.G, N = p.N, S = p.S;
  const int64_t off_b = p.off_b, off_c = p.off_c, off_dt = p.off_dt;
  a.q = Tensor::empty({batch, seq_len, R, H, N});
  a.k = Tensor::empty({batch, seq_len, R, H, N});
  a.adt = Tensor::empty({batch, seq_len, H});
  a.dt = Tensor::empty({batch, seq_len, H});
  a.trap = Tensor::empty({batch, seq_len, H});
  const int64_t heads_per_group = p.heads_per_group;
  parallel_for(batch, [&](int64_t b) {
    float* phi = angle.f32() + b * H * S;  // [n_heads, n_rope_angles]
    std::vector<float> bn(static_cast<size_t>(R * G * N)), cn(static_cast<size_t>(R * G * N)), omega(S);
    for (int64_t t = 0; t < seq_len; ++t) {
      const int64_t bt = b * seq_len + t;
      const float* row = proj.f32() + bt * width;
      rms_rows(row + off_b, g.B_norm_weight.f32(), R * G, N, bn.data());
      rms_rows(row + off_c, g.C_norm_weight.f32(), R * G, N, cn.data());
      // ω_i = π·tanh(angle_i), shared by heads (or a fixed RoPE frequency for the ablation).
      for (int64_t i = 0; i < S; ++i)
        omega[i] = g.rope == Mamba3Rope::data_independent
                       ? std::pow(10000.0f, -static_cast<float>(i) / static_cast<float>(S))
                       : std::numbers::pi_v<float> * std::tanh(row[off_dt + 3 * H + i]);
      for (int64_t h = 0; h < H; ++h) {
        // A = −max(f(dd_A), A_floor), f(a) = max(a,0) + 1/(1 − min(a,0)) (§3.3 item 1).
        const float dd_a = row[off_dt + H + h];
        const float A = -std::max(std::max(dd_a, 0.0f) + 1.0f / (1.0f - std::min(dd_a, 0.0f)), g.A_floor);
        const float dt = softplus(row[off_dt + h] + g.dt_bias.f32()[h]);
        a.adt.f32()[bt * H + h] = dt * A;
        a.dt.f32()[bt * H + h] = dt;
        a.trap.f32()[bt * H + h] = sigmoid(row[off_dt + 2 * H + h]);
        float* ph = phi + h * S;
        const float scale = g.rope == Mamba3Rope::data_dependent ? dt : 1.0f;
        for (int64_t i = 0; i < S; ++i) {
          ph[i] += omega[i] * scale;
          ph[i] -= kTwoPi * std::floor(ph[i] / kTwoPi);
        }
        const int64_t grp = h / heads_per_group;
        for (int64_t r = 0; r < R; ++r) {
          float* q = a.q.f32() + ((bt * R + r) * H + h) * N;
          float* k = a.k.f32() + ((bt * R + r) * H + h) * N;
          const float* bb = g.B_bias.f32() + (h * R + r) * N;
          const float* cb = g.C_bias.f32() + (h * R + r) * N;
          for (int64_t n = 0; n < N; ++n) {
            k[n] = bn[(r * G + grp) * N + n] + bb[n];
            q[n] = cn[(r * G + grp) * N + n] + cb[n];
          }
          if (g.rope != Mamba3Rope::none) {
            rotate(q, ph, S, N, g.half_split_pairs);
            rotate(k, ph, S, N, g.half_split_pairs);
          }
        }
      }
    }
  });
}

Tensor mamba3_combine_fwd(const Mamba3CombineDims& d, const Tensor& y, const Tensor& z,
                          const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o) {
  const int64_t batch = d.batch, seq_len = d.seq_len, R = d.R, H = d.H, P = d.P;
  const bool mimo = d.mimo, outproj_norm = d.outproj_norm;
  Tensor o = Tensor::zeros({batch, seq_len, H * P});
  parallel_for(batch * seq_len, [&](int64_t bt) {
    const float* zr = z.f32() + (bt / seq_len) * z.stride(0) + (bt % seq_len) * z.stride(1);
    float* out = o.f32() + bt * H * P;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t h = 0; h < H; ++h) {
        const float* yr = y.f32() + ((bt * R + r) * H + h) * P;
        float rstd = 1.0f;
        if (outproj_norm) {  // RMSNorm over the head's P channels (group P, norm before gate)
          float ss = 0.0f;
          for (int64_t p = 0; p < P; ++p) ss += yr[p] * yr[p];
          rstd = 1.0f / std::sqrt(ss / static_cast<float>(P) + 1e-5f);
        }
        for (int64_t p = 0; p < P; ++p) {
          const int64_t hrp = (h * R + r) * P + p;
          float v = yr[p] * rstd;
          if (outproj_norm) v *= norm_weight.f32()[h * P + p];
          v *= silu(zr[h * P + p] * (mimo ? mimo_z.f32()[hrp] : 1.0f));
          out[h * P + p] += mimo ? mimo_o.f32()[hrp] * v : v;
        }
      }
  });
  return o;
}

}  // namespace mamba::ops::cpu
