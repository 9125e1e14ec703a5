// Mamba-2 (SSD) mixer, SPEC.md §2: in_proj -> [z0 | x0 | z | xBC | dt] -> causal conv + silu on
// xBC -> chunked SSD -> gated grouped RMSNorm (or silu(z) gate) -> optional gated-MLP part
// placed first -> out_proj. dt_limit is applied in forward AND step (intended semantics, §8.8).
#include <cmath>

#include "models/architectures.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/norm/norm.h"
#include "ops/ssd/ssd.h"

namespace mamba::models {
namespace {

class Mamba2 final : public Mixer {
public:
  Mamba2(const io::ModelConfig& config, int64_t) : c_(config.mamba2), d_model_(config.d_model) {}

  io::MixerKind kind() const override { return io::MixerKind::mamba2; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t H = c_.n_heads;
    fn({"mixer.dt_bias", &dt_bias, {H}, true});
    fn({"mixer.A_log", &A_log, {H}, true});
    fn({"mixer.D", &D, {c_.D_has_hdim ? c_.d_ssm : H}, true});
    fn({"mixer.in_proj.weight", &in_proj_weight, {c_.d_in_proj, d_model_}});
    if (c_.bias) fn({"mixer.in_proj.bias", &in_proj_bias, {c_.d_in_proj}, true});
    fn({"mixer.conv1d.weight", &conv1d_weight, {c_.conv_dim, 1, c_.d_conv}});
    if (c_.conv_bias) fn({"mixer.conv1d.bias", &conv1d_bias, {c_.conv_dim}, true});
    if (c_.rmsnorm) fn({"mixer.norm.weight", &norm_weight, {c_.d_ssm}, true});
    fn({"mixer.out_proj.weight", &out_proj_weight, {d_model_, c_.d_inner}});
    if (c_.bias) fn({"mixer.out_proj.bias", &out_proj_bias, {d_model_}, true});
  }

  void prepare(ops::Exec& exec) override {
    A = ops::neg_exp(exec, A_log);  // on A_log's device
    conv_w = conv1d_weight.view({c_.conv_dim, c_.d_conv});
  }

  LayerState new_state(int64_t batch) const override {
    LayerState s;
    s.conv = Tensor::zeros({batch, c_.conv_dim, c_.d_conv - 1});
    s.ssm = Tensor::zeros({batch, c_.n_heads, c_.head_dim, c_.d_state});
    return s;
  }

  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t) const override {
    return run(exec, u, st, nullptr);
  }

  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    LayerState st = state_on(new_state(u.size(0)), u.device());
    return run(exec, u, st, &saved_as<Saved>(saved));
  }

  // out_proj -> MLP part / gated norm -> SSD -> dt and conv -> in_proj, in reverse; the input
  // gradients of every stage land in their columns of d zxbcdt.
  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    Mamba2& g = static_cast<Mamba2&>(grads);
    const int64_t batch = s.u.size(0), seq_len = s.u.size(1), dm = c_.d_mlp, ds = c_.d_ssm, H = c_.n_heads;
    const int64_t off_xbc = 2 * dm + ds, off_dt = off_xbc + c_.conv_dim;
    const Tensor dcat =
        ops::linear_bwd(exec, dout, s.y_cat, out_proj_weight, g.out_proj_weight, g.out_proj_bias);
    Tensor dzxbcdt =
        Tensor::zeros(s.zxbcdt.shape(), DType::f32, dout.device());  // [batch, seq_len, d_in_proj]
    if (dm > 0)
      columns(dzxbcdt, 0, 2 * dm)
          .copy_from(ops::swiglu_bwd(exec, columns(dcat, 0, dm), columns(s.zxbcdt, 0, 2 * dm), true));
    const Tensor dy = columns(dcat, dm, ds), z = columns(s.zxbcdt, 2 * dm, ds);
    Tensor dy_ssd, dz;
    if (c_.rmsnorm) {
      dy_ssd =
          ops::rms_norm_gated_bwd(exec, dy, s.y_ssd, z, norm_weight, ds / c_.norm_n_groups,
                                  c_.norm_before_gate, static_cast<float>(c_.norm_eps), g.norm_weight, dz);
    } else {
      ops::mul_silu_bwd(exec, dy, s.y_ssd, z, dy_ssd, dz);
    }
    columns(dzxbcdt, 2 * dm, ds).copy_from(dz);
    const ops::SsdGrads d = ops::ssd_bwd(exec, s.ssd, dy_ssd.view({batch, seq_len, H, c_.head_dim}));
    ops::neg_exp_bwd(exec, d.dA, A, g.A_log);
    ops::add_(exec, g.D, d.dD);
    columns(dzxbcdt, off_dt, H)
        .copy_from(ops::softplus_bias_clamp_bwd(exec, d.ddt, columns(s.zxbcdt, off_dt, H), dt_bias,
                                                static_cast<float>(c_.dt_limit_lo),
                                                static_cast<float>(c_.dt_limit_hi), g.dt_bias));
    const int64_t gn = c_.n_groups * c_.d_state;
    const Tensor dxbc = ops::concat_last(
        exec, ops::concat_last(exec, d.dx.view({batch, seq_len, ds}), d.dB.view({batch, seq_len, gn})),
        d.dC.view({batch, seq_len, gn}));
    Tensor dconv_w = g.conv1d_weight.view({c_.conv_dim, c_.d_conv});
    columns(dzxbcdt, off_xbc, c_.conv_dim)
        .copy_from(ops::causal_conv1d_bwd(exec, dxbc, columns(s.zxbcdt, off_xbc, c_.conv_dim), conv_w,
                                          conv1d_bias,
                                          /*silu=*/true, dconv_w, g.conv1d_bias));
    return ops::linear_bwd(exec, dzxbcdt, s.u, in_proj_weight, g.in_proj_weight, g.in_proj_bias);
  }

  int64_t state_bytes_fixed() const override {
    return 4 * (c_.conv_dim * (c_.d_conv - 1) + c_.n_heads * c_.head_dim * c_.d_state);
  }

private:
  // What forward_train keeps for backward.
  struct Saved final : MixerSaved {
    Tensor u;          // [batch, seq_len, d_model]
    Tensor zxbcdt;     // [batch, seq_len, d_in_proj]  in_proj output
    ops::SsdArgs ssd;  // x, dt, B, C (post conv), A, D: the scan's inputs
    Tensor y_ssd;      // [batch, seq_len, d_ssm]      scan output, before the gate / norm
    Tensor y_cat;      // [batch, seq_len, d_inner]    out_proj input
  };

  // The forward pass (SPEC §2.2); keeps its activations in `saved` when given.
  Tensor run(ops::Exec& exec, const Tensor& u, LayerState& st, Saved* saved) const {
    const int64_t batch = u.size(0), seq_len = u.size(1);
    const int64_t H = c_.n_heads, P = c_.head_dim, G = c_.n_groups, N = c_.d_state, dm = c_.d_mlp,
                  ds = c_.d_ssm;
    Tensor zxbcdt = ops::linear(exec, u, in_proj_weight, in_proj_bias);  // [batch, seq_len, d_in_proj]
    const Tensor z = columns(zxbcdt, 2 * dm, ds);
    Tensor xbc =
        ops::causal_conv1d_fwd(exec, columns(zxbcdt, 2 * dm + ds, c_.conv_dim), conv_w, conv1d_bias, st.conv,
                               /*silu=*/true);  // [batch, seq_len, conv_dim]
    ops::SsdArgs args;
    args.x = columns(xbc, 0, ds).contiguous().view({batch, seq_len, H, P});
    args.B = columns(xbc, ds, G * N).contiguous().view({batch, seq_len, G, N});
    args.C = columns(xbc, ds + G * N, G * N).contiguous().view({batch, seq_len, G, N});
    args.dt =
        ops::softplus_bias_clamp(exec, columns(zxbcdt, 2 * dm + ds + c_.conv_dim, H), dt_bias,
                                 static_cast<float>(c_.dt_limit_lo), static_cast<float>(c_.dt_limit_hi));
    args.A = A;
    args.D = D;
    args.chunk_size = c_.chunk_size;
    args.fast_bf16 = in_proj_weight.dtype() == DType::bf16;  // bf16 weights: bf16 scan operands too
    Tensor y = (seq_len == 1 ? ops::ssd_ref(exec, args, st.ssm) : ops::ssd_fwd(exec, args, st.ssm))
                   .view({batch, seq_len, ds});
    if (saved) {
      saved->u = u;
      saved->zxbcdt = zxbcdt;
      saved->ssd = args;
      saved->y_ssd = c_.rmsnorm ? y : y.copy();  // mul_silu_ below works in place
    }
    if (c_.rmsnorm) {
      y = ops::rms_norm_gated(exec, y, z, norm_weight, ds / c_.norm_n_groups, c_.norm_before_gate,
                              static_cast<float>(c_.norm_eps));
    } else {
      ops::mul_silu_(exec, y, z);
    }
    if (dm > 0)
      y = ops::concat_last(exec, ops::swiglu(exec, columns(zxbcdt, 0, 2 * dm), /*gate_first=*/true), y);
    if (saved) saved->y_cat = y;
    return ops::linear(exec, y, out_proj_weight, out_proj_bias);
  }

  io::Mamba2Config c_;
  int64_t d_model_;
  Tensor dt_bias, A_log, D, in_proj_weight, in_proj_bias, conv1d_weight, conv1d_bias, norm_weight,
      out_proj_weight, out_proj_bias;
  Tensor A, conv_w;  // derived: −exp(A_log) [n_heads]; conv weight as [conv_dim, d_conv]
};

}  // namespace

std::unique_ptr<Mixer> make_mamba2(const io::ModelConfig& config, int64_t layer) {
  return std::make_unique<Mamba2>(config, layer);
}

}  // namespace mamba::models
