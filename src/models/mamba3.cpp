// Mamba-3 mixer, SPEC.md §3: in_proj -> [z | x | B | C | dd_dt | dd_A | trap | angles] ->
// data-dependent A and Δ, RMS-normed and biased B/C, data-dependent rotation (RoPE on the state:
// SISO interleaved pairs, MIMO half-split pairs) -> exponential-trapezoidal scan (ops/mamba3_scan)
// -> silu(z) gate or head-wise RMSNorm, MIMO contraction -> out_proj. The cumulative angle is
// kept mod 2π after every token (§8.2: the reference's step lets it grow; same math).
#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "core/parallel.h"
#include "models/architectures.h"
#include "ops/elementwise/activations.h"
#include "ops/linear/linear.h"
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::models {
namespace {

constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;

class Mamba3 final : public Mixer {
public:
  Mamba3(const io::ModelConfig& config, int64_t) : c_(config.mamba3), d_model_(config.d_model) {}

  io::MixerKind kind() const override { return io::MixerKind::mamba3; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t H = c_.n_heads, R = c_.rank, N = c_.d_state, P = c_.head_dim;
    fn({"mixer.dt_bias", &dt_bias, {H}, true});
    fn({"mixer.B_bias", &B_bias, {H, R, N}, true});
    fn({"mixer.C_bias", &C_bias, {H, R, N}, true});
    if (c_.is_mimo) {
      fn({"mixer.mimo_x", &mimo_x, {H, R, P}, true});
      fn({"mixer.mimo_z", &mimo_z, {H, R, P}, true});
      fn({"mixer.mimo_o", &mimo_o, {H, R, P}, true});
    }
    fn({"mixer.D", &D, {H}, true});
    fn({"mixer.in_proj.weight", &in_proj_weight, {c_.d_in_proj, d_model_}});
    fn({"mixer.B_norm.weight", &B_norm_weight, {N}, true});
    fn({"mixer.C_norm.weight", &C_norm_weight, {N}, true});
    if (c_.is_outproj_norm) fn({"mixer.norm.weight", &norm_weight, {c_.d_inner}, true});
    fn({"mixer.out_proj.weight", &out_proj_weight, {d_model_, c_.d_inner}});
  }

  LayerState new_state(int64_t batch) const override {
    LayerState s;
    s.angle = Tensor::zeros({batch, c_.n_heads, c_.n_rope_angles});
    s.ssm = Tensor::zeros({batch, c_.n_heads, c_.head_dim, c_.d_state});
    s.k_prev = Tensor::zeros({batch, c_.rank, c_.n_heads, c_.d_state});
    s.v_prev = Tensor::zeros({batch, c_.n_heads, c_.head_dim});
    return s;
  }

  Tensor forward(const Tensor& u, LayerState& st, int64_t pos) const override {
    const int64_t batch = u.size(0), seq_len = u.size(1), H = c_.n_heads, P = c_.head_dim, R = c_.rank;
    const int64_t N = c_.d_state, di = c_.d_inner;
    Tensor proj = ops::linear(u, in_proj_weight);  // [batch, seq_len, d_in_proj]
    ops::Mamba3ScanArgs args;
    args.x = columns(proj, di, di).contiguous().view({batch, seq_len, H, P});
    args.q = Tensor::empty({batch, seq_len, R, H, N});
    args.k = Tensor::empty({batch, seq_len, R, H, N});
    args.adt = Tensor::empty({batch, seq_len, H});
    args.dt = Tensor::empty({batch, seq_len, H});
    args.trap = Tensor::empty({batch, seq_len, H});
    args.D = D;
    args.mimo_x = mimo_x;
    args.chunk_size = c_.chunk_size;
    per_token_quantities(proj, args, st, pos);
    Tensor y = Tensor::empty({batch, seq_len, R, H, P});
    ops::Mamba3ScanState scan_state{st.ssm, st.k_prev, st.v_prev};  // shares the buffers
    if (seq_len == 1) ops::mamba3_scan_step(args, scan_state, y);
    else ops::mamba3_scan_fwd(args, scan_state, y);
    return ops::linear(combine_output(y, proj), out_proj_weight);
  }

  Tensor step(const Tensor& u, LayerState& st, int64_t pos) const override {
    return forward(u.view({u.size(0), 1, d_model_}), st, pos).view({u.size(0), d_model_});
  }

  int64_t state_bytes_fixed() const override {
    const int64_t H = c_.n_heads;
    return 4 * H * (c_.n_rope_angles + c_.head_dim * c_.d_state + c_.rank * c_.d_state + c_.head_dim);
  }

private:
  // §3.3 items 1-7 for every token: A·Δ, Δ, λ and the rotated, biased q and k. Advances st.angle.
  void per_token_quantities(const Tensor& proj, ops::Mamba3ScanArgs& a, LayerState& st, int64_t pos) const {
    const int64_t batch = proj.size(0), seq_len = proj.size(1), width = proj.size(2);
    const int64_t H = c_.n_heads, R = c_.rank, G = c_.n_groups, N = c_.d_state, S = c_.n_rope_angles;
    const int64_t di = c_.d_inner, off_b = 2 * di, off_c = off_b + R * G * N, off_dt = off_c + R * G * N;
    const int64_t heads_per_group = H / G;
    const float A_floor = static_cast<float>(c_.A_floor);
    parallel_for(batch, [&](int64_t b) {
      float* phi = st.angle.f32() + b * H * S;  // [n_heads, n_rope_angles]
      std::vector<float> bn(static_cast<size_t>(R * G * N)), cn(static_cast<size_t>(R * G * N)), omega(S);
      for (int64_t t = 0; t < seq_len; ++t) {
        const int64_t bt = b * seq_len + t;
        const float* row = proj.f32() + bt * width;
        rms_rows(row + off_b, B_norm_weight.f32(), R * G, N, bn.data());
        rms_rows(row + off_c, C_norm_weight.f32(), R * G, N, cn.data());
        for (int64_t i = 0; i < S; ++i) omega[i] = rotation_rate(row[off_dt + 3 * H + i], i, pos + t);
        for (int64_t h = 0; h < H; ++h) {
          const float dd_a = row[off_dt + H + h];
          const float A = -std::max(std::max(dd_a, 0.0f) + 1.0f / (1.0f - std::min(dd_a, 0.0f)), A_floor);
          const float dt = ops::softplus(row[off_dt + h] + dt_bias.f32()[h]);
          a.adt.f32()[bt * H + h] = dt * A;
          a.dt.f32()[bt * H + h] = dt;
          a.trap.f32()[bt * H + h] = ops::sigmoid(row[off_dt + 2 * H + h]);
          float* ph = phi + h * S;
          const float scale = c_.rope_mode == io::RopeMode::data_dependent ? dt : 1.0f;
          for (int64_t i = 0; i < S; ++i) {
            ph[i] += omega[i] * scale;
            ph[i] -= kTwoPi * std::floor(ph[i] / kTwoPi);
          }
          const int64_t g = h / heads_per_group;
          for (int64_t r = 0; r < R; ++r) {
            float* q = a.q.f32() + ((bt * R + r) * H + h) * N;
            float* k = a.k.f32() + ((bt * R + r) * H + h) * N;
            const float* bb = B_bias.f32() + (h * R + r) * N;
            const float* cb = C_bias.f32() + (h * R + r) * N;
            for (int64_t n = 0; n < N; ++n) {
              k[n] = bn[(r * G + g) * N + n] + bb[n];
              q[n] = cn[(r * G + g) * N + n] + cb[n];
            }
            if (c_.rope_mode != io::RopeMode::none) {
              rotate(q, ph);
              rotate(k, ph);
            }
          }
        }
      }
    });
  }

  // ω_i: π·tanh(angle) (data-dependent, scaled by Δ per head), or a fixed RoPE frequency for
  // the data-independent ablation.
  float rotation_rate(float angle_raw, int64_t i, int64_t) const {
    if (c_.rope_mode == io::RopeMode::data_independent)
      return std::pow(10000.0f, -static_cast<float>(i) / static_cast<float>(c_.n_rope_angles));
    return std::numbers::pi_v<float> * std::tanh(angle_raw);
  }

  // RMSNorm over each of `rows` groups of n values (eps 1e-5, §3.3 item 4).
  static void rms_rows(const float* x, const float* w, int64_t rows, int64_t n, float* out) {
    for (int64_t r = 0; r < rows; ++r) {
      float ss = 0.0f;
      for (int64_t i = 0; i < n; ++i) ss += x[r * n + i] * x[r * n + i];
      const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(n) + 1e-5f);
      for (int64_t i = 0; i < n; ++i) out[r * n + i] = x[r * n + i] * rstd * w[i];
    }
  }

  // Rotation by φ of S pairs (§3.3 item 7): SISO (2i, 2i+1), MIMO (i, i + N/2).
  void rotate(float* v, const float* phi) const {
    const int64_t S = c_.n_rope_angles, half = c_.d_state / 2;
    for (int64_t i = 0; i < S; ++i) {
      const int64_t i0 = c_.is_mimo ? i : 2 * i, i1 = c_.is_mimo ? i + half : 2 * i + 1;
      const float cs = std::cos(phi[i]), sn = std::sin(phi[i]);
      const float x0 = v[i0], x1 = v[i1];
      v[i0] = x0 * cs - x1 * sn;
      v[i1] = x0 * sn + x1 * cs;
    }
  }

  // §3.4 output combination: gate (or head-wise norm + gate) per rank, then Σ_r mimo_o ⊙ y_r.
  // y: [batch, seq_len, rank, n_heads, head_dim] -> [batch, seq_len, d_inner]
  Tensor combine_output(const Tensor& y, const Tensor& proj) const {
    const int64_t batch = y.size(0), seq_len = y.size(1), R = c_.rank, H = c_.n_heads, P = c_.head_dim;
    const int64_t width = proj.size(2);
    Tensor o = Tensor::zeros({batch, seq_len, H * P});
    parallel_for(batch * seq_len, [&](int64_t bt) {
      const float* z = proj.f32() + bt * width;  // z = the first d_inner columns
      float* out = o.f32() + bt * H * P;
      for (int64_t r = 0; r < R; ++r)
        for (int64_t h = 0; h < H; ++h) {
          const float* yr = y.f32() + ((bt * R + r) * H + h) * P;
          float rstd = 1.0f;
          if (c_.is_outproj_norm) {
            float ss = 0.0f;
            for (int64_t p = 0; p < P; ++p) ss += yr[p] * yr[p];
            rstd = 1.0f / std::sqrt(ss / static_cast<float>(P) + 1e-5f);
          }
          for (int64_t p = 0; p < P; ++p) {
            const int64_t hrp = (h * R + r) * P + p;
            float v = yr[p] * rstd;
            if (c_.is_outproj_norm) v *= norm_weight.f32()[h * P + p];
            const float zv = z[h * P + p] * (c_.is_mimo ? mimo_z.f32()[hrp] : 1.0f);
            v *= ops::silu(zv);
            out[h * P + p] += c_.is_mimo ? mimo_o.f32()[hrp] * v : v;
          }
        }
    });
    return o;
  }

  io::Mamba3Config c_;
  int64_t d_model_;
  Tensor dt_bias, B_bias, C_bias, mimo_x, mimo_z, mimo_o, D, in_proj_weight, B_norm_weight, C_norm_weight,
      norm_weight, out_proj_weight;
};

}  // namespace

std::unique_ptr<Mixer> make_mamba3(const io::ModelConfig& config, int64_t layer) {
  return std::make_unique<Mamba3>(config, layer);
}

}  // namespace mamba::models
