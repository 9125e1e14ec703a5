// Backward of the Mamba-3 gates on CPU (SPEC §3.3, §3.4 output), from a zero angle state.
// prepare: work item = one sequence. The angles φ_t = φ_{t−1} + ω_t·Δ_t are recomputed forward;
// rotation backward gives dφ, whose reverse cumsum is the gradient of each increment ω_t·Δ_t.
// Parameter gradients are summed per item and reduced after the parallel loop. The front
// (mamba3_gates_bwd.cpp) has checked every tensor before these run.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <tuple>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/mamba3_gates/mamba3_gates_params.h"

namespace mamba::ops::cpu {

namespace {

constexpr float kPi = std::numbers::pi_v<float>;
constexpr float kTwoPi = 2.0f * kPi;

using Layout = Mamba3PrepareSizes;

// Per-sequence parameter gradients (double), reduced over the batch at the end.
struct Partials {
  std::vector<double> dt_bias, B_bias, C_bias, B_norm, C_norm;
  explicit Partials(const Layout& l)
      : dt_bias(l.H), B_bias(l.H * l.R * l.N), C_bias(l.H * l.R * l.N), B_norm(l.N), C_norm(l.N) {}
};

// RMSNorm over n values (eps 1e-5): y = x·rstd·w. dy -> dx; dw += dy·x·rstd.
void rms_row_bwd(const float* x, const float* w, const float* dy, int64_t n, float* dx, double* dw) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(n) + 1e-5f);
  float mean_dn_n = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    dw[i] += static_cast<double>(dy[i]) * x[i] * rstd;
    mean_dn_n += dy[i] * w[i] * x[i] * rstd;
  }
  mean_dn_n /= static_cast<float>(n);
  for (int64_t i = 0; i < n; ++i) dx[i] = rstd * (dy[i] * w[i] - x[i] * rstd * mean_dn_n);
}

// Rotation backward for one vector: `in` the unrotated values, dv the gradient of the rotated
// ones (turned in place into the gradient of `in`); dphi[i] += d loss / d φ_i.
void rotate_bwd(const float* in, float* dv, const float* phi, int64_t S, int64_t N, bool half_split,
                float* dphi) {
  for (int64_t i = 0; i < S; ++i) {
    const int64_t i0 = half_split ? i : 2 * i, i1 = half_split ? i + N / 2 : 2 * i + 1;
    const float cs = std::cos(phi[i]), sn = std::sin(phi[i]);
    const float a = in[i0], b = in[i1], d0 = dv[i0], d1 = dv[i1];
    // out0 = a·cs − b·sn, out1 = a·sn + b·cs
    dphi[i] += d0 * (-a * sn - b * cs) + d1 * (a * cs - b * sn);
    dv[i0] = d0 * cs + d1 * sn;
    dv[i1] = -d0 * sn + d1 * cs;
  }
}

float omega_of(const Mamba3Gates& g, const float* row, const Layout& l, int64_t i) {
  return g.rope == Mamba3Rope::data_independent
             ? std::pow(10000.0f, -static_cast<float>(i) / static_cast<float>(l.S))
             : kPi * std::tanh(row[l.off_dt + 3 * l.H + i]);
}

// Running angles of one sequence, φ [seq_len, n_heads, n_rope_angles] (kept mod 2π as forward).
std::vector<float> angles(const float* rows, const Mamba3Gates& g, const Layout& l, int64_t seq_len) {
  std::vector<float> phi(static_cast<size_t>(seq_len * l.H * l.S)), cur(static_cast<size_t>(l.H * l.S), 0.0f);
  for (int64_t t = 0; t < seq_len; ++t) {
    const float* row = rows + t * l.width;
    for (int64_t h = 0; h < l.H; ++h) {
      const float scale =
          g.rope == Mamba3Rope::data_dependent ? softplus(row[l.off_dt + h] + g.dt_bias.f32()[h]) : 1.0f;
      for (int64_t i = 0; i < l.S; ++i) {
        float& p = cur[h * l.S + i];
        p += omega_of(g, row, l, i) * scale;
        p -= kTwoPi * std::floor(p / kTwoPi);
      }
    }
    std::copy(cur.begin(), cur.end(), phi.begin() + t * l.H * l.S);
  }
  return phi;
}

// Per-sequence scratch of token_bwd: normalized B/C rows and their gradients [rank·groups·d_state],
// one unrotated key/query and its gradient [d_state].
struct TokenScratch {
  std::vector<float> bn, cn, dbn, dcn, tilde, grad;
  explicit TokenScratch(const Layout& l)
      : bn(l.R * l.G * l.N), cn(bn.size()), dbn(bn.size()), dcn(bn.size()), tilde(l.N), grad(l.N) {}
};

// Token t of sequence b: q/k back through rotation, biases and the B/C RMSNorm; A, λ columns;
// dφ [n_heads, S] and ddt [n_heads] (Δ's gradient so far) for the angle pass.
void token_bwd(const Mamba3Gates& g, const Mamba3ScanGrads& ds, const Layout& l, int64_t bt, const float* row,
               const float* phi, float* drow, float* dphi, float* ddt, TokenScratch& scratch,
               Partials& part) {
  const int64_t H = l.H, R = l.R, N = l.N;
  std::vector<float>&bn = scratch.bn, &cn = scratch.cn, &dbn = scratch.dbn, &dcn = scratch.dcn;
  std::vector<float>&tilde = scratch.tilde, &grad = scratch.grad;
  std::fill(dbn.begin(), dbn.end(), 0.0f);
  std::fill(dcn.begin(), dcn.end(), 0.0f);
  for (int64_t row_i = 0; row_i < R * l.G; ++row_i) {  // normalized B and C rows
    for (auto [src, w, dst] : {std::tuple{row + l.off_b, g.B_norm_weight.f32(), bn.data()},
                               std::tuple{row + l.off_c, g.C_norm_weight.f32(), cn.data()}}) {
      float ss = 0.0f;
      for (int64_t n = 0; n < N; ++n) ss += src[row_i * N + n] * src[row_i * N + n];
      const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(N) + 1e-5f);
      for (int64_t n = 0; n < N; ++n) dst[row_i * N + n] = src[row_i * N + n] * rstd * w[n];
    }
  }
  for (int64_t h = 0; h < H; ++h) {
    const int64_t grp = h / l.heads_per_group;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t at = ((bt * R + r) * H + h) * N, hr = (h * R + r) * N, rg = (r * l.G + grp) * N;
      for (auto [dscan, bias, normed, dnormed, dbias] :
           {std::tuple{ds.dk.f32(), g.B_bias.f32(), bn.data(), dbn.data(), part.B_bias.data()},
            std::tuple{ds.dq.f32(), g.C_bias.f32(), cn.data(), dcn.data(), part.C_bias.data()}}) {
        for (int64_t n = 0; n < N; ++n) {
          tilde[n] = normed[rg + n] + bias[hr + n];
          grad[n] = dscan[at + n];
        }
        if (g.rope != Mamba3Rope::none)
          rotate_bwd(tilde.data(), grad.data(), phi + h * l.S, l.S, N, g.half_split_pairs, dphi + h * l.S);
        for (int64_t n = 0; n < N; ++n) {
          dbias[hr + n] += grad[n];
          dnormed[rg + n] += grad[n];
        }
      }
    }
    // A = −max(f(dd_A), A_floor), f(a) = max(a, 0) + 1/(1 − min(a, 0)); adt = Δ·A.
    const int64_t i3 = bt * H + h;
    const float dd_a = row[l.off_dt + H + h], dt = softplus(row[l.off_dt + h] + g.dt_bias.f32()[h]);
    const float f = std::max(dd_a, 0.0f) + 1.0f / (1.0f - std::min(dd_a, 0.0f));
    const float df = dd_a >= 0.0f ? 1.0f : 1.0f / ((1.0f - dd_a) * (1.0f - dd_a));
    const float A = -std::max(f, g.A_floor);
    drow[l.off_dt + H + h] = f > g.A_floor ? -ds.dadt.f32()[i3] * dt * df : 0.0f;
    ddt[h] = ds.ddt.f32()[i3] + ds.dadt.f32()[i3] * A;
    const float lambda = sigmoid(row[l.off_dt + 2 * H + h]);
    drow[l.off_dt + 2 * H + h] = ds.dtrap.f32()[i3] * lambda * (1.0f - lambda);
  }
  for (int64_t row_i = 0; row_i < R * l.G; ++row_i) {
    const int64_t o = row_i * N;
    rms_row_bwd(row + l.off_b + o, g.B_norm_weight.f32(), dbn.data() + o, N, drow + l.off_b + o,
                part.B_norm.data());
    rms_row_bwd(row + l.off_c + o, g.C_norm_weight.f32(), dcn.data() + o, N, drow + l.off_c + o,
                part.C_norm.data());
  }
}

// Reverse pass over the angle cumsum, then Δ through the softplus into dd_dt and dt_bias.
void angle_and_dt_bwd(const Mamba3Gates& g, const Layout& l, int64_t seq_len, const float* rows, float* drows,
                      const float* dphi, float* ddt, Partials& part) {
  const int64_t H = l.H, S = l.S;
  std::vector<float> dinc(static_cast<size_t>(H * S), 0.0f);  // Σ_{s ≥ t} dφ_s
  for (int64_t t = seq_len - 1; t >= 0; --t) {
    const float* row = rows + t * l.width;
    float* drow = drows + t * l.width;
    for (int64_t i = 0; i < H * S; ++i) dinc[i] += dphi[t * H * S + i];
    for (int64_t i = 0; i < S; ++i) {
      float domega = 0.0f;
      if (g.rope == Mamba3Rope::data_dependent) {
        const float omega = omega_of(g, row, l, i), th = std::tanh(row[l.off_dt + 3 * H + i]);
        for (int64_t h = 0; h < H; ++h) {
          domega += dinc[h * S + i] * softplus(row[l.off_dt + h] + g.dt_bias.f32()[h]);
          ddt[t * H + h] += dinc[h * S + i] * omega;
        }
        domega *= kPi * (1.0f - th * th);
      }
      drow[l.off_dt + 3 * H + i] = domega;
    }
    for (int64_t h = 0; h < H; ++h) {
      const float draw = ddt[t * H + h] * softplus_grad(row[l.off_dt + h] + g.dt_bias.f32()[h]);
      drow[l.off_dt + h] = draw;
      part.dt_bias[h] += draw;
    }
  }
}

}  // namespace

void mamba3_prepare_bwd(const Mamba3PrepareSizes& l, const Tensor& proj, const Mamba3Gates& g,
                        const Mamba3ScanGrads& ds, Tensor& dproj, Mamba3Gates& grads) {
  const int64_t batch = l.batch, seq_len = l.seq_len;
  std::vector<Partials> parts(static_cast<size_t>(batch), Partials(l));
  parallel_for(batch, [&](int64_t b) {
    const float* rows = proj.f32() + b * seq_len * l.width;
    float* drows = dproj.f32() + b * seq_len * l.width;
    const std::vector<float> phi = angles(rows, g, l, seq_len);
    std::vector<float> dphi(phi.size(), 0.0f), ddt(static_cast<size_t>(seq_len * l.H));
    TokenScratch w(l);
    for (int64_t t = 0; t < seq_len; ++t)
      token_bwd(g, ds, l, b * seq_len + t, rows + t * l.width, phi.data() + t * l.H * l.S,
                drows + t * l.width, dphi.data() + t * l.H * l.S, ddt.data() + t * l.H, w, parts[b]);
    angle_and_dt_bwd(g, l, seq_len, rows, drows, dphi.data(), ddt.data(), parts[b]);
  });
  for (const Partials& p : parts) {
    for (auto [src, dst] : {std::pair{&p.dt_bias, &grads.dt_bias}, std::pair{&p.B_bias, &grads.B_bias},
                            std::pair{&p.C_bias, &grads.C_bias}, std::pair{&p.B_norm, &grads.B_norm_weight},
                            std::pair{&p.C_norm, &grads.C_norm_weight}}) {
      for (size_t i = 0; i < src->size(); ++i) dst->f32()[i] += static_cast<float>((*src)[i]);
    }
  }
}

Tensor mamba3_combine_bwd(const Mamba3CombineDims& d, const Tensor& dout, const Tensor& y, const Tensor& z,
                          const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o, Tensor& dz,
                          Tensor& dnorm_weight, Tensor& dmimo_z, Tensor& dmimo_o) {
  const int64_t batch = d.batch, seq_len = d.seq_len, R = d.R, H = d.H, P = d.P;
  const bool mimo = d.mimo, outproj_norm = d.outproj_norm;
  Tensor dy = Tensor::empty(y.shape());
  dz = Tensor::zeros({batch, seq_len, H * P});
  const int64_t n_items = batch * seq_len,
                n_groups = std::max<int64_t>(1, std::min<int64_t>(n_items, num_threads()));
  // Per-group sums of the parameter gradients: [n_groups, H·P] norm, [n_groups, H·R·P] mimo_z, mimo_o.
  std::vector<double> dnw(static_cast<size_t>(n_groups * H * P), 0.0),
      dmz(static_cast<size_t>(n_groups * H * R * P), 0.0);
  std::vector<double> dmo(dmz.size(), 0.0);
  parallel_for(n_groups, [&](int64_t grp) {
    std::vector<float> dn(static_cast<size_t>(P));
    for (int64_t bt = n_items * grp / n_groups; bt < n_items * (grp + 1) / n_groups; ++bt) {
      const float* zr = z.f32() + (bt / seq_len) * z.stride(0) + (bt % seq_len) * z.stride(1);
      const float* dr = dout.f32() + bt * H * P;
      float* dzr = dz.f32() + bt * H * P;
      for (int64_t r = 0; r < R; ++r)
        for (int64_t h = 0; h < H; ++h) {
          const float* yr = y.f32() + ((bt * R + r) * H + h) * P;
          float* dyr = dy.f32() + ((bt * R + r) * H + h) * P;
          float rstd = 1.0f;
          if (outproj_norm) {
            float ss = 0.0f;
            for (int64_t p = 0; p < P; ++p) ss += yr[p] * yr[p];
            rstd = 1.0f / std::sqrt(ss / static_cast<float>(P) + 1e-5f);
          }
          float mean_dn_n = 0.0f;
          for (int64_t p = 0; p < P; ++p) {
            const int64_t hp = h * P + p, hrp = (h * R + r) * P + p;
            const float n = yr[p] * rstd, w = outproj_norm ? norm_weight.f32()[hp] : 1.0f, pre = n * w;
            const float mz = mimo ? mimo_z.f32()[hrp] : 1.0f, u = zr[hp] * mz, gate = silu(u);
            const float dv = dr[hp] * (mimo ? mimo_o.f32()[hrp] : 1.0f);
            if (mimo) dmo[grp * H * R * P + hrp] += static_cast<double>(dr[hp]) * pre * gate;
            const float du = dv * pre * silu_grad(u);
            dzr[hp] += du * mz;
            if (mimo) dmz[grp * H * R * P + hrp] += static_cast<double>(du) * zr[hp];
            const float dpre = dv * gate;
            if (outproj_norm) dnw[grp * H * P + hp] += static_cast<double>(dpre) * n;
            dn[p] = dpre * w;
            mean_dn_n += dn[p] * n;
          }
          mean_dn_n /= static_cast<float>(P);
          for (int64_t p = 0; p < P; ++p)
            dyr[p] = outproj_norm ? rstd * (dn[p] - yr[p] * rstd * mean_dn_n) : dn[p];
        }
    }
  });
  for (int64_t grp = 0; grp < n_groups; ++grp) {
    if (outproj_norm)
      for (int64_t i = 0; i < H * P; ++i) dnorm_weight.f32()[i] += static_cast<float>(dnw[grp * H * P + i]);
    if (mimo)
      for (int64_t i = 0; i < H * R * P; ++i) {
        dmimo_z.f32()[i] += static_cast<float>(dmz[grp * H * R * P + i]);
        dmimo_o.f32()[i] += static_cast<float>(dmo[grp * H * R * P + i]);
      }
  }
  return dy;
}

}  // namespace mamba::ops::cpu
