// Mamba-3 mixer, SPEC.md §3: in_proj -> [z | x | B | C | dd_dt | dd_A | trap | angles] ->
// data-dependent A and Δ, RMS-normed and biased B/C, data-dependent rotation (RoPE on the state:
// SISO interleaved pairs, MIMO half-split pairs) -> exponential-trapezoidal scan (ops/mamba3_scan)
// -> silu(z) gate or head-wise RMSNorm, MIMO contraction -> out_proj. The cumulative angle is
// kept mod 2π after every token (§8.2: the reference's step lets it grow; same math).
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

  // Decode in the residual stream with the bf16 GEMV: the block's RMSNorm runs in the in_proj
  // GEMV's prologue and the residual add in the out_proj GEMV's epilogue, so a layer is three
  // kernels (the unfused norm and add would be two more).
  bool fuses_residual_step(ops::Exec& exec, int64_t batch) const override {
    return ops::decode_gemv_applies(exec, batch, in_proj_weight) &&
           ops::decode_gemv_applies(exec, batch, out_proj_weight);
  }
  void step_residual(ops::Exec& exec, Tensor& residual, const Tensor& block_norm_weight, float eps,
                     LayerState& st, int64_t) const override {
    const Tensor proj = ops::rms_norm_linear(exec, residual, block_norm_weight, eps, in_proj_weight);
    ops::linear_add_(exec, residual, step_inner(exec, proj, st), out_proj_weight);
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
    // Inference on CUDA where the tensor-core scan runs: the prepare writes q/k in bf16 and x is
    // converted once from its proj columns, so the scan reads them as they are. Training keeps
    // f32 operands for the backward.
    args.bf16_operands =
        args.fast_bf16 && saved == nullptr && u.device() == Device::cuda &&
        ops::mamba3_scan_fast_bf16_applies(seq_len, c_.rank, mimo_x.defined(), P, c_.d_state);
    const Tensor x_columns = columns(proj, di, di);  // [batch, seq_len, d_inner], rows strided
    args.x = (args.bf16_operands ? x_columns.to(DType::bf16) : x_columns.contiguous())
                 .view({batch, seq_len, H, P});
    ops::mamba3_prepare_fwd(exec, proj, gates_, st.angle, args);
    Tensor y = Tensor::empty({batch, seq_len, c_.rank, H, P}, DType::f32, u.device());  // per-rank outputs
    ops::Mamba3ScanState scan_state{st.ssm, st.k_prev, st.v_prev};                      // shares the buffers
    if (seq_len == 1)
      ops::mamba3_scan_step(exec, args, scan_state, y);
    else
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

  static ops::Mamba3Rope rope_mode(io::RopeMode m) {
    return m == io::RopeMode::none               ? ops::Mamba3Rope::none
           : m == io::RopeMode::data_independent ? ops::Mamba3Rope::data_independent
                                                 : ops::Mamba3Rope::data_dependent;
  }

  io::Mamba3Config c_;
  int64_t d_model_;
  Tensor dt_bias, B_bias, C_bias, mimo_x, mimo_z, mimo_o, D, in_proj_weight, B_norm_weight, C_norm_weight,
      norm_weight, out_proj_weight;
  ops::Mamba3Gates gates_{};  // derived in prepare(): shapes and the gate parameters
};

}  // namespace

std::unique_ptr<Mixer> make_mamba3(const io::ModelConfig& config, int64_t layer) {
  return std::make_unique<Mamba3>(config, layer);
}

}  // namespace mamba::models
