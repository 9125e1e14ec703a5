// Mamba-3 mixer, SPEC.md §3: in_proj -> [z | x | B | C | dd_dt | dd_A | trap | angles] ->
// data-dependent A and Δ, RMS-normed and biased B/C, data-dependent rotation (RoPE on the state:
// SISO interleaved pairs, MIMO half-split pairs) -> exponential-trapezoidal scan (ops/mamba3_scan)
// -> silu(z) gate or head-wise RMSNorm, MIMO contraction -> out_proj. The cumulative angle is
// kept mod 2π after every token (§8.2: the reference's step lets it grow; same math).
#include "models/mamba3.h"

#include "models/architectures.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/mamba3_step/mamba3_step.h"

namespace mamba::models {
namespace {

class Mamba3 final : public Mixer {
public:
  Mamba3(const ModelConfig& config, int64_t) : c_(config.section<Mamba3Config>()), d_model_(config.d_model) {}

  MixerKind kind() const override { return MixerKind::mamba3; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t H = c_.n_heads, R = c_.rank, N = c_.d_state, P = c_.head_dim;
    fn({"mixer.dt_bias", &dt_bias, {H}, true, Init::dt_bias(c_.dt_min, c_.dt_max, c_.dt_init_floor)});
    fn({"mixer.B_bias", &B_bias, {H, R, N}, true, Init::ones()});
    fn({"mixer.C_bias", &C_bias, {H, R, N}, true, Init::ones()});
    if (c_.is_mimo) {  // x and o average the ranks, z gates each
      const Init mean = Init::constant(1.0f / static_cast<float>(R));
      fn({"mixer.mimo_x", &mimo_x, {H, R, P}, true, mean});
      fn({"mixer.mimo_z", &mimo_z, {H, R, P}, true, Init::ones()});
      fn({"mixer.mimo_o", &mimo_o, {H, R, P}, true, mean});
    }
    fn({"mixer.D", &D, {H}, true, Init::ones()});
    fn({"mixer.in_proj.weight", &in_proj_weight, {c_.d_in_proj, d_model_}});
    fn({"mixer.B_norm.weight", &B_norm_weight, {N}, true, Init::ones()});
    fn({"mixer.C_norm.weight", &C_norm_weight, {N}, true, Init::ones()});
    if (c_.is_outproj_norm) fn({"mixer.norm.weight", &norm_weight, {c_.d_inner}, true, Init::ones()});
    fn({"mixer.out_proj.weight", &out_proj_weight, {d_model_, c_.d_inner}, false, Init::residual_out()});
  }

  LayerState new_state(int64_t batch) const override {
    LayerState s;
    s.angle = Tensor::zeros({batch, c_.n_heads, c_.n_rope_angles});
    s.ssm = Tensor::zeros({batch, c_.n_heads, c_.head_dim, c_.d_state});
    s.k_prev = Tensor::zeros({batch, c_.rank, c_.n_heads, c_.d_state});
    s.v_prev = Tensor::zeros({batch, c_.n_heads, c_.head_dim});
    return s;
  }

  void prepare(ops::Exec& exec) override {
    gates_ = {c_.n_heads,
              c_.head_dim,
              c_.d_state,
              c_.n_groups,
              c_.rank,
              c_.n_rope_angles,
              static_cast<float>(c_.A_floor),
              c_.is_mimo,
              rope_mode(c_.rope_mode),
              dt_bias,
              B_bias,
              C_bias,
              B_norm_weight,
              C_norm_weight};
  }

  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t) const override {
    return run(exec, u, st, nullptr);
  }

  // One token (decode): in_proj -> the fused step (gates, scan, output stage: one kernel on CUDA,
  // the ops of run() in sequence on the CPU) -> out_proj.
  Tensor step(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t) const override {
    return ops::linear(exec, step_inner(exec, ops::linear(exec, u, in_proj_weight), st), out_proj_weight);
  }

  // Decode in the residual stream: where the ops fuse them (CUDA's bf16 GEMV), the block's
  // RMSNorm runs in the in_proj GEMV's prologue and the residual add in the out_proj GEMV's
  // epilogue, so a layer is three kernels (the unfused norm and add would be two more).
  Tensor step_residual(ops::Exec& exec, Tensor& residual, const Tensor& pending,
                       const Tensor& block_norm_weight, float eps, LayerState& st, int64_t) const override {
    const ops::DecodeProjections p{block_norm_weight, eps, in_proj_weight, out_proj_weight};
    const Tensor proj = ops::decode_in_proj(exec, residual, pending, p);
    return ops::decode_out_proj(exec, residual, step_inner(exec, proj, st), p);
  }

  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    LayerState st = state_on(new_state(u.size(0)), u.device());
    return run(exec, u, st, &saved_as<Saved>(saved));
  }

  // out_proj -> combine (gate / head norm, MIMO contraction) -> scan -> gates (norms, biases,
  // rotation, angle cumsum) -> in_proj, in reverse; input gradients land in their columns of dproj.
  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    Mamba3& g = static_cast<Mamba3&>(grads);
    const int64_t batch = s.u.size(0), seq_len = s.u.size(1), di = c_.d_inner;
    Tensor none, dz;
    const Tensor d_o = ops::linear_bwd(exec, dout, s.o, out_proj_weight, g.out_proj_weight, none);
    const Tensor dy = ops::mamba3_combine_bwd(exec, d_o, s.y, columns(s.proj, 0, di), norm_weight, mimo_z,
                                              mimo_o, dz, g.norm_weight, g.mimo_z, g.mimo_o);
    const ops::Mamba3ScanGrads d = ops::mamba3_scan_bwd(exec, s.scan, dy);
    ops::add_(exec, g.D, d.dD);
    if (c_.is_mimo) ops::add_(exec, g.mimo_x, d.dmimo_x);
    Tensor dproj = Tensor::zeros(s.proj.shape(), DType::f32, dout.device());  // [batch, seq_len, d_in_proj]
    columns(dproj, 0, di).copy_from(dz);
    columns(dproj, di, di).copy_from(d.dx.view({batch, seq_len, di}));
    ops::Mamba3Gates dgates = gates_;  // the same shapes, holding g's gradient tensors
    dgates.dt_bias = g.dt_bias;
    dgates.B_bias = g.B_bias;
    dgates.C_bias = g.C_bias;
    dgates.B_norm_weight = g.B_norm_weight;
    dgates.C_norm_weight = g.C_norm_weight;
    ops::mamba3_prepare_bwd(exec, s.proj, gates_, d, dproj, dgates);
    return ops::linear_bwd(exec, dproj, s.u, in_proj_weight, g.in_proj_weight, none);
  }

  int64_t state_bytes_fixed() const override {
    const int64_t H = c_.n_heads;
    return 4 * H * (c_.n_rope_angles + c_.head_dim * c_.d_state + c_.rank * c_.d_state + c_.head_dim);
  }

private:
  // What forward_train keeps for backward.
  struct Saved final : MixerSaved {
    Tensor u;                  // [batch, seq_len, d_model]
    Tensor proj;               // [batch, seq_len, d_in_proj]  in_proj output
    ops::Mamba3ScanArgs scan;  // x, rotated q/k, adt, dt, λ: the scan's inputs
    Tensor y;                  // [batch, seq_len, rank, n_heads, head_dim]  per-rank scan outputs
    Tensor o;                  // [batch, seq_len, d_inner]    out_proj input
  };

  // One token between the projections: proj [batch, d_in_proj] -> out_proj input [batch, d_inner].
  Tensor step_inner(ops::Exec& exec, const Tensor& proj, LayerState& st) const {
    ops::Mamba3ScanState scan_state{st.ssm, st.k_prev, st.v_prev};  // shares the buffers
    return ops::mamba3_step(exec, proj, gates_, {D, mimo_x, mimo_z, mimo_o, norm_weight}, st.angle,
                            scan_state);
  }

  // The forward pass (SPEC §3.6); keeps its activations in `saved` when given.
  Tensor run(ops::Exec& exec, const Tensor& u, LayerState& st, Saved* saved) const {
    const int64_t batch = u.size(0), seq_len = u.size(1), H = c_.n_heads, P = c_.head_dim, di = c_.d_inner;
    Tensor proj = ops::linear(exec, u, in_proj_weight);  // [batch, seq_len, d_in_proj]
    ops::Mamba3ScanArgs args;
    args.D = D;
    args.mimo_x = mimo_x;
    args.chunk_size = c_.chunk_size;
    args.fast_bf16 = in_proj_weight.dtype() == DType::bf16;  // bf16 weights: bf16 scan operands too
    args.for_backward = saved != nullptr;                    // training keeps f32 operands
    // x: its proj columns [batch, seq_len, d_inner] (rows strided); the prepare makes the scan's
    // x of them (f32, or bf16 where its front chooses bf16 operands).
    args.x = columns(proj, di, di);
    ops::mamba3_prepare_fwd(exec, proj, gates_, st.angle, args);
    Tensor y = Tensor::empty({batch, seq_len, c_.rank, H, P}, DType::f32, u.device());  // per-rank outputs
    ops::Mamba3ScanState scan_state{st.ssm, st.k_prev, st.v_prev};                      // shares the buffers
    ops::mamba3_scan_fwd(exec, args, scan_state, y);
    const Tensor o = ops::mamba3_combine_fwd(exec, y, columns(proj, 0, di), norm_weight, mimo_z, mimo_o);
    if (saved) {
      saved->u = u;
      saved->proj = proj;
      saved->scan = args;
      saved->y = y;
      saved->o = o;
    }
    return ops::linear(exec, o, out_proj_weight);
  }

  static ops::Mamba3Rope rope_mode(RopeMode m) {
    return m == RopeMode::none               ? ops::Mamba3Rope::none
           : m == RopeMode::data_independent ? ops::Mamba3Rope::data_independent
                                             : ops::Mamba3Rope::data_dependent;
  }

  Mamba3Config c_;
  int64_t d_model_;
  Tensor dt_bias, B_bias, C_bias, mimo_x, mimo_z, mimo_o, D, in_proj_weight, B_norm_weight, C_norm_weight,
      norm_weight, out_proj_weight;
  ops::Mamba3Gates gates_{};  // derived in prepare(): shapes and the gate parameters
};

// ---- The architecture: config section, derived dimensions and in_proj layout, JSON, bench shapes. ----

void parse(const io::Reader& r, ModelConfig& c) {
  Mamba3Config& m = c.section<Mamba3Config>();
  m.d_state = r.integer("d_state", m.d_state);
  m.expand = r.number("expand", m.expand);
  m.head_dim = r.integer("headdim", m.head_dim);
  m.n_groups = r.integer("ngroups", m.n_groups);
  m.rope_fraction = r.number("rope_fraction", m.rope_fraction);
  m.A_floor = r.number("A_floor", m.A_floor);
  m.dt_min = r.number("dt_min", m.dt_min);
  m.dt_max = r.number("dt_max", m.dt_max);
  m.dt_init_floor = r.number("dt_init_floor", m.dt_init_floor);
  m.is_outproj_norm = r.boolean("is_outproj_norm", m.is_outproj_norm);
  m.is_mimo = r.boolean("is_mimo", m.is_mimo);
  m.mimo_rank = r.integer("mimo_rank", m.mimo_rank);
  m.chunk_size = r.integer("chunk_size", m.chunk_size);
  const std::string rope = r.string("rope_mode", "data_dependent");  // mambacpp extension (ablations)
  if (rope == "data_dependent")
    m.rope_mode = RopeMode::data_dependent;
  else if (rope == "none")
    m.rope_mode = RopeMode::none;
  else if (rope == "data_independent")
    m.rope_mode = RopeMode::data_independent;
  else
    throw_error(ErrorCode::parse, r.where("rope_mode"),
                " expected data_dependent, none or data_independent, found '", rope, "'");
}

void check(const ModelConfig& c, const std::string& src) {
  const Mamba3Config& m = c.section<Mamba3Config>();
  require_sizes(src, {{"ssm_cfg.d_state", m.d_state},
                      {"ssm_cfg.headdim", m.head_dim},
                      {"ssm_cfg.ngroups", m.n_groups},
                      {"ssm_cfg.mimo_rank", m.mimo_rank},
                      {"ssm_cfg.chunk_size", m.chunk_size}});
}

void finalize(ModelConfig& c, const std::string& src) {
  Mamba3Config& m3 = c.section<Mamba3Config>();
  m3.d_inner = io::expanded(m3.expand, c.d_model, src);
  io::require_positive(src, "d_state", m3.d_state);
  io::require_positive(src, "headdim", m3.head_dim);
  io::require_positive(src, "ngroups", m3.n_groups);
  io::require_positive(src, "chunk_size", m3.chunk_size);
  if (m3.d_inner % m3.head_dim != 0)
    io::inconsistent(src, "d_inner " + std::to_string(m3.d_inner) + " is not divisible by headdim " +
                              std::to_string(m3.head_dim));
  m3.n_heads = m3.d_inner / m3.head_dim;
  if (m3.n_heads % m3.n_groups != 0)
    io::inconsistent(src, "n_heads " + std::to_string(m3.n_heads) + " is not divisible by ngroups " +
                              std::to_string(m3.n_groups));
  if (m3.rope_fraction != 0.5 && m3.rope_fraction != 1.0)
    throw_error(ErrorCode::unsupported, src, ": field 'ssm_cfg.rope_fraction' expected 0.5 or 1.0, found ",
                m3.rope_fraction);
  m3.rank = m3.is_mimo ? m3.mimo_rank : 1;
  io::require_positive(src, "mimo_rank", m3.rank);
  int64_t split = static_cast<int64_t>(static_cast<double>(m3.d_state) * m3.rope_fraction);
  if (split % 2 != 0) split -= 1;
  m3.n_rope_angles = split / 2;
  if (m3.n_rope_angles <= 0)
    io::inconsistent(src, "d_state " + std::to_string(m3.d_state) + " leaves no rotary angles");
  if (m3.is_mimo && 2 * m3.n_rope_angles > m3.d_state)
    io::inconsistent(src, "MIMO rotation needs n_rope_angles <= d_state / 2");
  m3.d_in_proj =
      ops::mamba3_layout(m3.n_heads, m3.head_dim, m3.d_state, m3.n_groups, m3.rank, m3.n_rope_angles).width;
}

nlohmann::json to_json(const ModelConfig& c) {
  const Mamba3Config& m = c.section<Mamba3Config>();
  nlohmann::json ssm = {{"layer", "Mamba3"},         {"d_state", m.d_state},
                        {"expand", m.expand},        {"headdim", m.head_dim},
                        {"ngroups", m.n_groups},     {"rope_fraction", m.rope_fraction},
                        {"A_floor", m.A_floor},      {"is_outproj_norm", m.is_outproj_norm},
                        {"is_mimo", m.is_mimo},      {"mimo_rank", m.mimo_rank},
                        {"chunk_size", m.chunk_size}};
  if (m.rope_mode != RopeMode::data_dependent)
    ssm["rope_mode"] = m.rope_mode == RopeMode::none ? "none" : "data_independent";
  return ssm;
}

void bench_shapes(const std::string& name, ModelConfig& c) {
  c.ssm_layer = MixerKind::mamba3;
  Mamba3Config& m = c.section<Mamba3Config>();
  m.d_state = 128;
  m.head_dim = 64;
  m.is_mimo = name == "mamba3-mimo";
  m.mimo_rank = 4;
  m.chunk_size = m.is_mimo ? 16 : 64;
}

std::unique_ptr<Mixer> make(const ModelConfig& config, int64_t layer) {
  return std::make_unique<Mamba3>(config, layer);
}

}  // namespace

extern const ArchSpec mamba3_arch = {.kind = MixerKind::mamba3,
                                     .name = "Mamba3",
                                     .section = "ssm_cfg",
                                     .parse = parse,
                                     .check = check,
                                     .finalize = finalize,
                                     .to_json = to_json,
                                     .make_mixer = make,
                                     .bench_names = {"mamba3-siso", "mamba3-mimo"},
                                     .bench_shapes = bench_shapes};

}  // namespace mamba::models
