// Mamba-1 (S6) mixer, SPEC.md §1: in_proj -> causal conv + silu -> x_proj -> dt_proj ->
// selective scan gated by silu(z) -> out_proj. The step is the same pipeline on one token;
// backward runs it in reverse from the activations forward_train kept.
#include "models/mamba1.h"

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
  using Norm = Mamba1Config::BcdtNorm;

public:
  Mamba1(const ModelConfig& config, int64_t) : c_(config.section<Mamba1Config>()), d_model_(config.d_model) {}

  MixerKind kind() const override { return MixerKind::mamba1; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t di = c_.d_inner, n = c_.d_state, r = c_.dt_rank;
    const Init dt = Init::dt_bias(c_.dt_min, c_.dt_max, c_.dt_init_floor);
    fn({"mixer.A_log", &A_log, {di, n}, true, {Init::Kind::a_log_s4d}});
    fn({"mixer.D", &D, {di}, true, Init::ones()});
    fn({"mixer.in_proj.weight", &in_proj_weight, {2 * di, d_model_}});
    if (c_.bias) fn({"mixer.in_proj.bias", &in_proj_bias, {2 * di}, true, Init::zeros()});
    fn({"mixer.conv1d.weight", &conv1d_weight, {di, 1, c_.d_conv}, false, conv_weight_init(c_.d_conv)});
    if (c_.conv_bias) fn({"mixer.conv1d.bias", &conv1d_bias, {di}, true, conv_bias_init()});
    fn({"mixer.x_proj.weight", &x_proj_weight, {r + 2 * n, di}});
    fn({"mixer.dt_proj.weight",
        &dt_proj_weight,
        {di, r},
        false,
        Init::uniform(static_cast<float>(std::pow(static_cast<double>(r), -0.5)))});
    fn({"mixer.dt_proj.bias", &dt_proj_bias, {di}, true, dt});
    fn({"mixer.out_proj.weight", &out_proj_weight, {d_model_, di}, false, Init::residual_out()});
    if (c_.bias) fn({"mixer.out_proj.bias", &out_proj_bias, {d_model_}, true, Init::zeros()});
    if (c_.bcdt_norm == Norm::learned) {
      fn({"mixer.dt_layernorm.weight", &dt_norm_weight, {r}, true, Init::ones()});
      fn({"mixer.b_layernorm.weight", &b_norm_weight, {n}, true, Init::ones()});
      fn({"mixer.c_layernorm.weight", &c_norm_weight, {n}, true, Init::ones()});
    }
  }

  void prepare(ops::Exec& exec) override {
    assign_derived(A, ops::neg_exp(exec, A_log));  // on A_log's device
    conv_w = conv1d_weight.view({c_.d_inner, c_.d_conv});
    if (c_.bcdt_norm == Norm::weightless &&
        (!b_norm_weight.defined() ||
         b_norm_weight.device() != A_log.device())) {  // unit weights: the same RMSNorm op without a weight
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
    if (!saved) args.y_into = args.delta;                    // δ's last reader is the scan
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
    // The scan's inputs released before out_proj (a prefill chunk's are MiBs of the peak).
    xz = x = x_dbl = delta_low = dt_raw = B_raw = C_raw = Tensor();
    args = ops::SelectiveScanArgs();
    return ops::linear(exec, y, out_proj_weight, out_proj_bias);
  }

  Mamba1Config c_;
  int64_t d_model_;
  Tensor A_log, D, in_proj_weight, in_proj_bias, conv1d_weight, conv1d_bias, x_proj_weight, dt_proj_weight,
      dt_proj_bias, out_proj_weight, out_proj_bias;
  Tensor dt_norm_weight, b_norm_weight, c_norm_weight;  // learned (Jamba) or derived unit weights
  Tensor A, conv_w;  // derived: −exp(A_log) [d_inner, d_state]; conv weight as [d_inner, d_conv]
};

// ---- The architecture: config section, HF fields, derived dimensions, JSON, bench shapes. ----

void parse(const io::Reader& r, ModelConfig& c) {
  Mamba1Config& m = c.section<Mamba1Config>();
  m.d_state = r.integer("d_state", m.d_state);
  m.d_conv = r.integer("d_conv", m.d_conv);
  m.expand = r.number("expand", m.expand);
  if (r.has("dt_rank") && r.j.at("dt_rank").is_string()) {
    if (r.string("dt_rank", "auto") != "auto")
      r.type_error("dt_rank", "an integer or \"auto\"", r.j.at("dt_rank"));
  } else {
    m.dt_rank = r.integer("dt_rank", 0);
  }
  m.conv_bias = r.boolean("conv_bias", m.conv_bias);
  m.bias = r.boolean("bias", m.bias);
  m.dt_min = r.number("dt_min", m.dt_min);
  m.dt_max = r.number("dt_max", m.dt_max);
  m.dt_init_floor = r.number("dt_init_floor", m.dt_init_floor);
  m.dt_scale = r.number("dt_scale", m.dt_scale);
  m.dt_init = r.string("dt_init", m.dt_init);
}

void parse_hf(const io::Reader& r, const std::string& model_type, ModelConfig& c) {
  const double expand = r.number("expand", 2);
  Mamba1Config& m = c.section<Mamba1Config>();
  m.d_state = r.integer("state_size", 16);
  m.d_conv = r.integer("conv_kernel", 4);
  m.expand = expand;
  if (r.has("time_step_rank") && r.j.at("time_step_rank").is_string())
    m.dt_rank = 0;
  else
    m.dt_rank = r.integer("time_step_rank", 0);
  m.conv_bias = r.boolean("use_conv_bias", true);
  m.bias = r.boolean("use_bias", false);
  if (model_type == "falcon_mamba") {
    m.bcdt_norm = Mamba1Config::BcdtNorm::weightless;
    m.bcdt_norm_eps = r.number("mixer_rms_eps", 1e-6);
  }
  const int64_t inner = io::expanded(expand, c.d_model, r.source);
  const int64_t inter = r.integer("intermediate_size", inner);
  if (inter != inner)
    io::inconsistent(r.source, "intermediate_size " + std::to_string(inter) + " != expand * hidden_size");
}

void check(const ModelConfig& c, const std::string& src) {
  const Mamba1Config& m = c.section<Mamba1Config>();
  require_sizes(
      src, {{"ssm_cfg.d_state", m.d_state}, {"ssm_cfg.d_conv", m.d_conv}, {"ssm_cfg.dt_rank", m.dt_rank}});
  if (m.dt_rank < 0) throw_error(ErrorCode::parse, src, ": ssm_cfg.dt_rank must not be negative");
}

void finalize(ModelConfig& c, const std::string& src) {
  Mamba1Config& m1 = c.section<Mamba1Config>();
  m1.d_inner = io::expanded(m1.expand, c.d_model, src);
  if (m1.dt_rank == 0) m1.dt_rank = (c.d_model + 15) / 16;
  io::require_positive(src, "d_state", m1.d_state);
  io::require_positive(src, "d_conv", m1.d_conv);
  io::require_positive(src, "d_inner", m1.d_inner);
}

nlohmann::json to_json(const ModelConfig& c) {
  const Mamba1Config& m = c.section<Mamba1Config>();
  return {{"layer", "Mamba1"},    {"d_state", m.d_state},     {"d_conv", m.d_conv}, {"expand", m.expand},
          {"dt_rank", m.dt_rank}, {"conv_bias", m.conv_bias}, {"bias", m.bias}};
}

void bench_shapes(const std::string&, ModelConfig& c) {
  c.ssm_layer = MixerKind::mamba1;
  c.section<Mamba1Config>().d_state = 16;
}

std::unique_ptr<Mixer> make(const ModelConfig& config, int64_t layer) {
  return std::make_unique<Mamba1>(config, layer);
}

}  // namespace

extern const ArchSpec mamba1_arch = {.kind = MixerKind::mamba1,
                                     .name = "Mamba1",
                                     .section = "ssm_cfg",
                                     .parse = parse,
                                     .hf_model_types = {"mamba", "falcon_mamba"},
                                     .parse_hf = parse_hf,
                                     .check = check,
                                     .finalize = finalize,
                                     .to_json = to_json,
                                     .make_mixer = make,
                                     .bench_names = {"mamba1"},
                                     .bench_shapes = bench_shapes};

}  // namespace mamba::models
