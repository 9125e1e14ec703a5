// Mamba-2 (SSD) mixer, SPEC.md §2: in_proj -> [z0 | x0 | z | xBC | dt] -> causal conv + silu on
// xBC -> chunked SSD -> gated grouped RMSNorm (or silu(z) gate) -> optional gated-MLP part
// placed first -> out_proj. dt_limit is applied in forward AND step (intended semantics, §8.8).
#include "models/mamba2.h"

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
  Mamba2(const ModelConfig& config, int64_t) : c_(config.section<Mamba2Config>()), d_model_(config.d_model) {}

  MixerKind kind() const override { return MixerKind::mamba2; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t H = c_.n_heads;
    fn({"mixer.dt_bias", &dt_bias, {H}, true, Init::dt_bias(c_.dt_min, c_.dt_max, c_.dt_init_floor)});
    fn({"mixer.A_log", &A_log, {H}, true, {Init::Kind::a_log_range, c_.A_init_lo, c_.A_init_hi}});
    fn({"mixer.D", &D, {c_.D_has_hdim ? c_.d_ssm : H}, true, Init::ones()});
    fn({"mixer.in_proj.weight", &in_proj_weight, {c_.d_in_proj, d_model_}});
    if (c_.bias) fn({"mixer.in_proj.bias", &in_proj_bias, {c_.d_in_proj}, true, Init::zeros()});
    fn({"mixer.conv1d.weight",
        &conv1d_weight,
        {c_.conv_dim, 1, c_.d_conv},
        false,
        conv_weight_init(c_.d_conv)});
    if (c_.conv_bias) fn({"mixer.conv1d.bias", &conv1d_bias, {c_.conv_dim}, true, conv_bias_init()});
    if (c_.rmsnorm) fn({"mixer.norm.weight", &norm_weight, {c_.d_ssm}, true, Init::ones()});
    fn({"mixer.out_proj.weight", &out_proj_weight, {d_model_, c_.d_inner}, false, Init::residual_out()});
    if (c_.bias) fn({"mixer.out_proj.bias", &out_proj_bias, {d_model_}, true, Init::zeros()});
  }

  void prepare(ops::Exec& exec) override {
    assign_derived(A, ops::neg_exp(exec, A_log));  // on A_log's device
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
    Tensor z = columns(zxbcdt, 2 * dm, ds);
    Tensor xbc =
        ops::causal_conv1d_fwd(exec, columns(zxbcdt, 2 * dm + ds, c_.conv_dim), conv_w, conv1d_bias, st.conv,
                               /*silu=*/true);  // [batch, seq_len, conv_dim]
    ops::SsdArgs args;
    args.x = columns(xbc, 0, ds).contiguous().view({batch, seq_len, H, P});
    args.B = columns(xbc, ds, G * N).contiguous().view({batch, seq_len, G, N});
    args.C = columns(xbc, ds + G * N, G * N).contiguous().view({batch, seq_len, G, N});
    // Each activation is released once its last reader has run (a prefill chunk's are MiBs: the
    // peak resident set is the weights plus the largest set alive at once).
    xbc = Tensor();
    const Tensor dt_raw = columns(zxbcdt, 2 * dm + ds + c_.conv_dim, H);
    const float dt_lo = static_cast<float>(c_.dt_limit_lo), dt_hi = static_cast<float>(c_.dt_limit_hi);
    if (saved) {  // the backward takes Δ itself
      args.dt = ops::softplus_bias_clamp(exec, dt_raw, dt_bias, dt_lo, dt_hi);
    } else {  // the scan takes Δ from the raw dt (in the one-token step, no pass of its own)
      args.dt = dt_raw;
      args.dt_bias = dt_bias;
      args.dt_lo = dt_lo;
      args.dt_hi = dt_hi;
    }
    args.A = A;
    args.D = D;
    args.chunk_size = c_.chunk_size;
    args.fast_bf16 = in_proj_weight.dtype() == DType::bf16;  // bf16 weights: bf16 scan operands too
    Tensor y = ops::ssd_fwd(exec, args, st.ssm).view({batch, seq_len, ds});
    if (saved) {
      saved->u = u;
      saved->zxbcdt = zxbcdt;
      saved->ssd = args;
      saved->y_ssd = c_.rmsnorm ? y : y.copy();  // mul_silu_ below works in place
    }
    args = ops::SsdArgs();
    if (c_.rmsnorm) {
      y = ops::rms_norm_gated(exec, y, z, norm_weight, ds / c_.norm_n_groups, c_.norm_before_gate,
                              static_cast<float>(c_.norm_eps));
    } else {
      ops::mul_silu_(exec, y, z);
    }
    if (dm > 0)
      y = ops::concat_last(exec, ops::swiglu(exec, columns(zxbcdt, 0, 2 * dm), /*gate_first=*/true), y);
    if (saved) saved->y_cat = y;
    z = zxbcdt = Tensor();
    return ops::linear(exec, y, out_proj_weight, out_proj_bias);
  }

  Mamba2Config c_;
  int64_t d_model_;
  Tensor dt_bias, A_log, D, in_proj_weight, in_proj_bias, conv1d_weight, conv1d_bias, norm_weight,
      out_proj_weight, out_proj_bias;
  Tensor A, conv_w;  // derived: −exp(A_log) [n_heads]; conv weight as [conv_dim, d_conv]
};

// ---- The architecture: config section, HF fields, derived dimensions, JSON, bench shapes. ----

void parse(const io::Reader& r, ModelConfig& c) {
  using nlohmann::json;
  Mamba2Config& m = c.section<Mamba2Config>();
  m.d_state = r.integer("d_state", m.d_state);
  m.d_conv = r.integer("d_conv", m.d_conv);
  m.expand = r.number("expand", m.expand);
  m.head_dim = r.integer("headdim", m.head_dim);
  m.d_ssm = r.integer("d_ssm", m.d_ssm);
  m.n_groups = r.integer("ngroups", m.n_groups);
  m.chunk_size = r.integer("chunk_size", m.chunk_size);
  m.D_has_hdim = r.boolean("D_has_hdim", m.D_has_hdim);
  m.rmsnorm = r.boolean("rmsnorm", m.rmsnorm);
  m.norm_before_gate = r.boolean("norm_before_gate", m.norm_before_gate);
  m.bias = r.boolean("bias", m.bias);
  m.conv_bias = r.boolean("conv_bias", m.conv_bias);
  if (r.has("dt_limit")) {
    const json& v = r.j.at("dt_limit");
    if (!v.is_array() || v.size() != 2) r.type_error("dt_limit", "a pair [lo, hi]", v);
    m.dt_limit_lo = r.to_number("dt_limit", v[0]);
    m.dt_limit_hi = r.to_number("dt_limit", v[1]);
  }
  m.dt_min = r.number("dt_min", m.dt_min);
  m.dt_max = r.number("dt_max", m.dt_max);
  m.dt_init_floor = r.number("dt_init_floor", m.dt_init_floor);
  if (r.has("A_init_range")) {
    const json& v = r.j.at("A_init_range");
    if (!v.is_array() || v.size() != 2) r.type_error("A_init_range", "a pair [lo, hi]", v);
    m.A_init_lo = r.to_number("A_init_range", v[0]);
    m.A_init_hi = r.to_number("A_init_range", v[1]);
  }
}

void parse_hf(const io::Reader& r, const std::string&, ModelConfig& c) {
  using nlohmann::json;
  const double expand = r.number("expand", 2);
  Mamba2Config& m = c.section<Mamba2Config>();
  m.d_state = r.integer("state_size", 128);
  m.d_conv = r.integer("conv_kernel", 4);
  m.expand = expand;
  m.head_dim = r.integer("head_dim", 64);
  m.n_groups = r.integer("n_groups", 1);
  m.chunk_size = r.integer("chunk_size", 256);
  m.conv_bias = r.boolean("use_conv_bias", true);
  m.bias = r.boolean("use_bias", false);
  m.rmsnorm = r.boolean("rms_norm", true);
  m.norm_eps = c.norm_eps;
  // The gated RMSNorm is per group (d_ssm / n_groups), as mamba_ssm, llama.cpp and the checkpoints'
  // own training compute it; transformers <= 5.17 normalizes the whole row (a bug there, issue 11).
  m.norm_n_groups = m.n_groups;
  if (r.has("time_step_limit")) {
    const json& v = r.j.at("time_step_limit");
    if (!v.is_array() || v.size() != 2) r.type_error("time_step_limit", "a pair [lo, hi]", v);
    m.dt_limit_lo = r.to_number("time_step_limit", v[0]);
    m.dt_limit_hi = r.to_number("time_step_limit", v[1]);
  }
  const int64_t heads = r.integer("num_heads", 0);
  const int64_t inner = io::expanded(expand, c.d_model, r.source);
  io::require_at_most(r.source, "num_heads", heads, io::kMaxDim);
  io::require_at_most(r.source, "head_dim", m.head_dim, io::kMaxDim);
  if (heads > 0 && m.head_dim >= 0 && heads * m.head_dim != inner)
    io::inconsistent(r.source, "num_heads " + std::to_string(heads) + " * head_dim " +
                                   std::to_string(m.head_dim) + " != expand * hidden_size " +
                                   std::to_string(inner));
}

void check(const ModelConfig& c, const std::string& src) {
  const Mamba2Config& m = c.section<Mamba2Config>();
  require_sizes(src, {{"ssm_cfg.d_state", m.d_state},
                      {"ssm_cfg.d_conv", m.d_conv},
                      {"ssm_cfg.headdim", m.head_dim},
                      {"ssm_cfg.d_ssm", m.d_ssm},
                      {"ssm_cfg.ngroups", m.n_groups},
                      {"ssm_cfg.chunk_size", m.chunk_size}});
}

void finalize(ModelConfig& c, const std::string& src) {
  Mamba2Config& m2 = c.section<Mamba2Config>();
  m2.d_inner = io::expanded(m2.expand, c.d_model, src);
  if (m2.d_ssm < 0) m2.d_ssm = m2.d_inner;
  io::require_positive(src, "d_state", m2.d_state);
  io::require_positive(src, "headdim", m2.head_dim);
  io::require_positive(src, "ngroups", m2.n_groups);
  io::require_positive(src, "d_conv", m2.d_conv);
  io::require_positive(src, "chunk_size", m2.chunk_size);
  if (m2.d_ssm % m2.head_dim != 0)
    io::inconsistent(src, "d_ssm " + std::to_string(m2.d_ssm) + " is not divisible by headdim " +
                              std::to_string(m2.head_dim));
  m2.n_heads = m2.d_ssm / m2.head_dim;
  if (m2.n_heads % m2.n_groups != 0)
    io::inconsistent(src, "n_heads " + std::to_string(m2.n_heads) + " is not divisible by ngroups " +
                              std::to_string(m2.n_groups));
  if (m2.d_ssm > m2.d_inner) io::inconsistent(src, "d_ssm is larger than d_inner");
  if (m2.norm_n_groups <= 0) m2.norm_n_groups = m2.n_groups;
  // in_proj: [z0 | x0 | z | xBC | dt], widths d_mlp, d_mlp, d_ssm, conv_dim, n_heads.
  m2.d_mlp = m2.d_inner - m2.d_ssm;
  m2.conv_dim = m2.d_ssm + 2 * m2.n_groups * m2.d_state;
  m2.d_in_proj = 2 * m2.d_inner + 2 * m2.n_groups * m2.d_state + m2.n_heads;
}

nlohmann::json to_json(const ModelConfig& c) {
  using nlohmann::json;
  const Mamba2Config& m = c.section<Mamba2Config>();
  json ssm = {{"layer", "Mamba2"},
              {"d_state", m.d_state},
              {"d_conv", m.d_conv},
              {"expand", m.expand},
              {"headdim", m.head_dim},
              {"ngroups", m.n_groups},
              {"chunk_size", m.chunk_size},
              {"D_has_hdim", m.D_has_hdim},
              {"rmsnorm", m.rmsnorm},
              {"norm_before_gate", m.norm_before_gate},
              {"bias", m.bias},
              {"conv_bias", m.conv_bias}};
  if (m.d_ssm != m.d_inner) ssm["d_ssm"] = m.d_ssm;
  if (m.dt_limit_lo != 0.0 || std::isfinite(m.dt_limit_hi))
    ssm["dt_limit"] = {m.dt_limit_lo, std::isfinite(m.dt_limit_hi) ? json(m.dt_limit_hi) : json("Infinity")};
  return ssm;
}

void bench_shapes(const std::string&, ModelConfig& c) {
  c.ssm_layer = MixerKind::mamba2;
  Mamba2Config& m = c.section<Mamba2Config>();
  m.d_state = 128;
  m.head_dim = 64;
}

std::unique_ptr<Mixer> make(const ModelConfig& config, int64_t layer) {
  return std::make_unique<Mamba2>(config, layer);
}

}  // namespace

extern const ArchSpec mamba2_arch = {.kind = MixerKind::mamba2,
                                     .name = "Mamba2",
                                     .section = "ssm_cfg",
                                     .parse = parse,
                                     .hf_model_types = {"mamba2"},
                                     .parse_hf = parse_hf,
                                     .check = check,
                                     .finalize = finalize,
                                     .to_json = to_json,
                                     .make_mixer = make,
                                     .bench_names = {"mamba2"},
                                     .bench_shapes = bench_shapes};

}  // namespace mamba::models
