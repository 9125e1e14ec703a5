// Mamba-1 (S6) mixer, SPEC.md §1: in_proj -> causal conv + silu -> x_proj -> dt_proj ->
// selective scan gated by silu(z) -> out_proj. The step is the same pipeline on one token;
// backward runs it in reverse from the activations forward_train kept.
#include <cmath>

#include "models/architectures.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/norm/norm.h"
#include "ops/selective_scan/selective_scan.h"

namespace mamba::models {
namespace {

class Mamba1 final : public Mixer {
  using Norm = io::Mamba1Config::BcdtNorm;

public:
  Mamba1(const io::ModelConfig& config, int64_t) : c_(config.mamba1), d_model_(config.d_model) {}

  io::MixerKind kind() const override { return io::MixerKind::mamba1; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t di = c_.d_inner, n = c_.d_state, r = c_.dt_rank;
    fn({"mixer.A_log", &A_log, {di, n}, true});
    fn({"mixer.D", &D, {di}, true});
    fn({"mixer.in_proj.weight", &in_proj_weight, {2 * di, d_model_}});
    if (c_.bias) fn({"mixer.in_proj.bias", &in_proj_bias, {2 * di}, true});
    fn({"mixer.conv1d.weight", &conv1d_weight, {di, 1, c_.d_conv}});
    if (c_.conv_bias) fn({"mixer.conv1d.bias", &conv1d_bias, {di}, true});
    fn({"mixer.x_proj.weight", &x_proj_weight, {r + 2 * n, di}});
    fn({"mixer.dt_proj.weight", &dt_proj_weight, {di, r}});
    fn({"mixer.dt_proj.bias", &dt_proj_bias, {di}, true});
    fn({"mixer.out_proj.weight", &out_proj_weight, {d_model_, di}});
    if (c_.bias) fn({"mixer.out_proj.bias", &out_proj_bias, {d_model_}, true});
    if (c_.bcdt_norm == Norm::learned) {
      fn({"mixer.dt_layernorm.weight", &dt_norm_weight, {r}, true});
      fn({"mixer.b_layernorm.weight", &b_norm_weight, {n}, true});
      fn({"mixer.c_layernorm.weight", &c_norm_weight, {n}, true});
    }
  }

  void prepare(ops::Exec& exec) override {
    A = ops::neg_exp(exec, A_log);  // on A_log's device
    conv_w = conv1d_weight.view({c_.d_inner, c_.d_conv});
    if (c_.bcdt_norm == Norm::weightless) {  // unit weights: the same RMSNorm op without a weight
      dt_norm_weight = Tensor::full({c_.dt_rank}, 1.0f).to(A_log.device());
      b_norm_weight = Tensor::full({c_.d_state}, 1.0f).to(A_log.device());
      c_norm_weight = b_norm_weight;
    }
  }

  LayerState new_state(int64_t batch) const override {
    LayerState s;
    s.conv = Tensor::zeros({batch, c_.d_inner, c_.d_conv - 1});
    s.ssm = Tensor::zeros({batch, c_.d_inner, c_.d_state});
    return s;
  }

  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t) const override {
    return run(exec, u, st, nullptr);
  }

  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    LayerState st = state_on(new_state(u.size(0)), u.device());
    return run(exec, u, st, &saved_as<Saved>(saved));
  }

  // in_proj <- conv <- x_proj/dt_proj <- selective scan <- out_proj, in reverse.
  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    Mamba1& g = static_cast<Mamba1&>(grads);
    const int64_t di = c_.d_inner;
    Tensor none;
    const Tensor dy = ops::linear_bwd(exec, dout, s.y, out_proj_weight, g.out_proj_weight, g.out_proj_bias);
    const ops::SelectiveScanGrads ds = ops::selective_scan_bwd(exec, s.scan, dy);
    ops::neg_exp_bwd(exec, ds.dA, A, g.A_log);
    ops::add_(exec, g.D, ds.dD);
    ops::add_(exec, g.dt_proj_bias, ds.ddelta_bias);
    Tensor ddelta_low = ops::linear_bwd(exec, ds.ddelta, s.delta_low, dt_proj_weight, g.dt_proj_weight, none);
    Tensor dB = ds.dB, dC = ds.dC;
    if (c_.bcdt_norm != Norm::none) {  // back through the RMSNorms of dt_low, B, C
      const float eps = static_cast<float>(c_.bcdt_norm_eps);
      const bool learned = c_.bcdt_norm == Norm::learned;
      Tensor scratch_dt = learned ? g.dt_norm_weight : Tensor::zeros({c_.dt_rank}, DType::f32, dout.device());
      Tensor scratch_b = learned ? g.b_norm_weight : Tensor::zeros({c_.d_state}, DType::f32, dout.device());
      Tensor scratch_c = learned ? g.c_norm_weight : Tensor::zeros({c_.d_state}, DType::f32, dout.device());
      ddelta_low = ops::rms_norm_bwd(exec, ddelta_low, s.dt_raw, dt_norm_weight, eps, scratch_dt);
      dB = ops::rms_norm_bwd(exec, dB.contiguous(), s.B_raw, b_norm_weight, eps, scratch_b);
      dC = ops::rms_norm_bwd(exec, dC.contiguous(), s.C_raw, c_norm_weight, eps, scratch_c);
    }
    const Tensor dx_dbl =
        ops::concat_last(exec, ops::concat_last(exec, ddelta_low, dB), dC);  // [.., dt_rank + 2·d_state]
    Tensor dx = ops::linear_bwd(exec, dx_dbl, s.scan.u, x_proj_weight, g.x_proj_weight, none);
    ops::add_(exec, dx, ds.du);
    Tensor dconv_w = g.conv1d_weight.view({di, c_.d_conv});
    const Tensor dx_in = ops::causal_conv1d_bwd(exec, dx, columns(s.xz, 0, di), conv_w, conv1d_bias,
                                                /*silu=*/true, dconv_w, g.conv1d_bias);
    return ops::linear_bwd(exec, ops::concat_last(exec, dx_in, ds.dz), s.u, in_proj_weight, g.in_proj_weight,
                           g.in_proj_bias);
  }

  int64_t state_bytes_fixed() const override { return 4 * c_.d_inner * ((c_.d_conv - 1) + c_.d_state); }

private:
  // What forward_train keeps for backward.
  struct Saved final : MixerSaved {
    Tensor u;                     // [batch, seq_len, d_model]
    Tensor xz;                    // [batch, seq_len, 2·d_inner]  in_proj output [x | z]
    Tensor delta_low;             // [batch, seq_len, dt_rank]    dt_proj input
    Tensor dt_raw, B_raw, C_raw;  // x_proj's dt_low, B, C before their RMSNorms (bcdt_norm only)
    ops::SelectiveScanArgs scan;  // u = post-conv x, δ_raw, B, C, z: the scan's inputs
    Tensor y;                     // [batch, seq_len, d_inner]    out_proj input
  };

  // The forward pass (SPEC §1.2); keeps its activations in `saved` when given.
  Tensor run(ops::Exec& exec, const Tensor& u, LayerState& st, Saved* saved) const {
    const int64_t di = c_.d_inner, n = c_.d_state, r = c_.dt_rank;
    Tensor xz = ops::linear(exec, u, in_proj_weight, in_proj_bias);  // [batch, seq_len, 2·d_inner]
    Tensor x = ops::causal_conv1d_fwd(exec, columns(xz, 0, di), conv_w, conv1d_bias, st.conv, /*silu=*/true);
    Tensor x_dbl = ops::linear(exec, x, x_proj_weight);  // [batch, seq_len, dt_rank + 2·d_state]
    Tensor delta_low = columns(x_dbl, 0, r).contiguous();
    ops::SelectiveScanArgs args;
    args.B = columns(x_dbl, r, n);
    args.C = columns(x_dbl, r + n, n);
    Tensor dt_raw, B_raw, C_raw;
    if (c_.bcdt_norm != Norm::none) {  // Falcon-Mamba / Jamba: RMSNorm on dt_low, B, C
      const float eps = static_cast<float>(c_.bcdt_norm_eps);
      dt_raw = delta_low;
      B_raw = args.B.contiguous();
      C_raw = args.C.contiguous();
      delta_low = ops::rms_norm(exec, dt_raw, dt_norm_weight, eps);
      args.B = ops::rms_norm(exec, B_raw, b_norm_weight, eps);
      args.C = ops::rms_norm(exec, C_raw, c_norm_weight, eps);
    }
    args.u = x;
    args.delta = ops::linear(exec, delta_low, dt_proj_weight);  // bias goes in the scan
    args.delta_bias = dt_proj_bias;
    args.A = A;
    args.D = D;
    args.z = columns(xz, di, di);
    Tensor y = ops::selective_scan_fwd(exec, args, st.ssm);  // [batch, seq_len, d_inner]
    if (saved) {
      saved->u = u;
      saved->xz = xz;
      saved->delta_low = delta_low;
      saved->dt_raw = dt_raw;
      saved->B_raw = B_raw;
      saved->C_raw = C_raw;
      saved->scan = args;
      saved->y = y;
    }
    return ops::linear(exec, y, out_proj_weight, out_proj_bias);
  }

  io::Mamba1Config c_;
  int64_t d_model_;
  Tensor A_log, D, in_proj_weight, in_proj_bias, conv1d_weight, conv1d_bias, x_proj_weight, dt_proj_weight,
      dt_proj_bias, out_proj_weight, out_proj_bias;
  Tensor dt_norm_weight, b_norm_weight, c_norm_weight;  // learned (Jamba) or derived unit weights
  Tensor A, conv_w;  // derived: −exp(A_log) [d_inner, d_state]; conv weight as [d_inner, d_conv]
};

}  // namespace

std::unique_ptr<Mixer> make_mamba1(const io::ModelConfig& config, int64_t layer) {
  return std::make_unique<Mamba1>(config, layer);
}

}  // namespace mamba::models
