// The mixer interface every architecture file implements, and the per-layer recurrent state.
// Weights are immutable after loading (a `const Model&` is shared across threads); everything
// that changes while a sequence runs lives in `LayerState`.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "models/config.h"
#include "ops/exec.h"
#include "ops/norm/norm.h"

namespace mamba::models {

// How Model::random fills a parameter: the reference's from-scratch scheme (SPEC §1.1, §2.1,
// §3.2, §4.6). The file that declares a parameter chooses its rule, so a renamed tensor keeps its
// initialisation and the skeleton knows no architecture. Bounds are floats stored exactly.
struct Init {
  enum class Kind {
    fan_in,        // U(±1/√fan_in), fan_in = numel / shape[0]: nn.Linear's default (and the fallback)
    residual_out,  // U(±1/√fan_in)/√n_layer: projections into the residual stream (out_proj, fc2)
    embedding,     // N(0, 0.02)
    constant,      // `a` everywhere: norm weights and D (1), biases (0)
    uniform,       // U(±a): conv weights and biases, dt_proj.weight
    a_log_s4d,     // ln(n + 1) along the last dim: Mamba-1's S4D-real A
    a_log_range,   // ln U[a, b): Mamba-2's A_init_range
    dt_bias,       // inverse softplus of dt ~ log-uniform [a, b), floored at c
  };
  Kind kind = Kind::fan_in;
  double a = 0, b = 0, c = 0;

  static Init ones() { return {Kind::constant, 1.0}; }
  static Init zeros() { return {Kind::constant, 0.0}; }
  static Init constant(float v) { return {Kind::constant, v}; }
  static Init uniform(float bound) { return {Kind::uniform, bound}; }
  static Init residual_out() { return {Kind::residual_out}; }
  static Init dt_bias(double dt_min, double dt_max, double floor) {
    return {Kind::dt_bias, dt_min, dt_max, floor};
  }
};

// Called once per parameter with its checkpoint name relative to the block ("mixer.A_log"),
// the tensor to fill, the shape it must have and its initialisation rule.
struct ParamRef {
  std::string name;
  Tensor* tensor;
  Shape shape;
  bool no_weight_decay = false;  // biases, norms, A_log, D, dt_bias (SPEC §1.1 / optimizer)
  Init init = {};

  // The same parameter under another name (a family's or a block's prefix).
  ParamRef renamed(std::string new_name) const {
    ParamRef r = *this;
    r.name = std::move(new_name);
    return r;
  }
};
using ParamVisitor = std::function<void(const ParamRef&)>;

// Per-layer state of one batch of sequences. Which fields are used depends on the mixer; all f32.
struct LayerState {
  Tensor conv;     // [batch, conv_channels, d_conv - 1]     last pre-conv inputs (Mamba-1/2, MHA d_conv)
  Tensor ssm;      // Mamba-1: [batch, d_inner, d_state]; Mamba-2/3: [batch, n_heads, head_dim, d_state]
  Tensor angle;    // Mamba-3: [batch, n_heads, n_rope_angles]  cumulative rotation φ (mod 2π)
  Tensor k_prev;   // Mamba-3: [batch, mimo_rank, n_heads, d_state]  rotated, biased key of the last token
  Tensor v_prev;   // Mamba-3: [batch, n_heads, head_dim]    x of the last token
  Tensor k_cache;  // MHA: [batch, capacity, n_kv_heads, head_dim]
  Tensor v_cache;  // MHA: [batch, capacity, n_kv_heads, head_dim]

  // Visits every defined tensor with a stable name (serialization, copies, size accounting).
  template <typename Fn>
  void visit(Fn&& fn) {
    for (auto [name, t] : {std::pair<const char*, Tensor*>{"conv", &conv},
                           {"ssm", &ssm},
                           {"angle", &angle},
                           {"k_prev", &k_prev},
                           {"v_prev", &v_prev},
                           {"k_cache", &k_cache},
                           {"v_cache", &v_cache}})
      if (t->defined()) fn(name, *t);
  }
};

// Activations one mixer's forward_train keeps for its backward. Each architecture file derives
// its own; forward_train creates it on first use and refills it on every step (`saved_as`).
struct MixerSaved {
  virtual ~MixerSaved() = default;
};

template <typename T>
T& saved_as(std::unique_ptr<MixerSaved>& saved) {
  if (!dynamic_cast<T*>(saved.get())) saved = std::make_unique<T>();
  return static_cast<T&>(*saved);
}

class Mixer {
public:
  virtual ~Mixer() = default;
  virtual MixerKind kind() const = 0;
  // Every parameter, in checkpoint order, names relative to "mixer.".
  virtual void visit_params(const ParamVisitor& fn) = 0;
  // Derived constants (A = −exp(A_log), reshaped conv weights, ...) after params are filled.
  virtual void prepare(ops::Exec& /*exec*/) {}
  virtual LayerState new_state(int64_t batch) const = 0;
  // Whole-sequence pass continuing from `state` (a fresh state = a new sequence) at token
  // position `pos`. u: [batch, seq_len, d_model] -> [batch, seq_len, d_model].
  virtual Tensor forward(ops::Exec& exec, const Tensor& u, LayerState& state, int64_t pos) const = 0;
  // One token. u: [batch, d_model] -> [batch, d_model]. By default the whole-sequence pass on a
  // length-1 sequence (every op takes its one-token path there); a mixer may override it with a
  // fused kernel.
  virtual Tensor step(ops::Exec& exec, const Tensor& u, LayerState& state, int64_t pos) const {
    return forward(exec, u.view({u.size(0), 1, u.size(1)}), state, pos).view({u.size(0), u.size(1)});
  }
  // One token inside the pre-norm residual stream of an RMSNorm model (Model::step): residual +=
  // pending, then returns step(rms_norm(residual, norm_weight, eps)), the new pending output (or
  // undefined where the mixer added it into the residual itself). By default exactly that
  // (ops::add_rms_norm_ adds the pending output inside the norm's kernel); a mixer whose
  // projections may fuse the norm and the add overrides it with ops::decode_in_proj /
  // decode_out_proj, whose fronts choose. Same values either way.
  virtual Tensor step_residual(ops::Exec& exec, Tensor& residual, const Tensor& pending,
                               const Tensor& norm_weight, float eps, LayerState& state, int64_t pos) const {
    return step(exec, ops::add_rms_norm_(exec, residual, pending, norm_weight, eps), state, pos);
  }
  // Training: the forward of whole sequences from a fresh state, keeping in `saved` what
  // backward needs. u: [batch, seq_len, d_model] -> [batch, seq_len, d_model].
  virtual Tensor forward_train(ops::Exec& exec, const Tensor& u,
                               std::unique_ptr<MixerSaved>& saved) const = 0;
  // Backward of forward_train: dout [batch, seq_len, d_model] -> du. Accumulates d loss / d param
  // into `grads`, a mixer of the same kind whose parameters hold gradients (Model::new_grads).
  virtual Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved,
                          Mixer& grads) const = 0;
  // ---- Mixers that also read the model's token embeddings (Zamba2's shared transformer reads
  // concat(stream, embeddings)). Model calls the *_emb variants where reads_embeddings(). ----
  virtual bool reads_embeddings() const { return false; }
  virtual Tensor forward_emb(ops::Exec& exec, const Tensor& u, const Tensor& /*emb*/, LayerState& state,
                             int64_t pos) const {
    return forward(exec, u, state, pos);
  }
  virtual Tensor forward_train_emb(ops::Exec& exec, const Tensor& u, const Tensor& /*emb*/,
                                   std::unique_ptr<MixerSaved>& saved) const {
    return forward_train(exec, u, saved);
  }
  // Adds d loss / d embeddings into demb.
  virtual Tensor backward_emb(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads,
                              Tensor& /*demb*/) const {
    return backward(exec, dout, saved, grads);
  }
  // A name for `info` ("Mamba2", "MHA", "MoE", ...).
  virtual std::string label() const { return mixer_kind_name(kind()); }
  // Bytes of state per sequence that do not grow with its length / that do (per token).
  virtual int64_t state_bytes_fixed() const = 0;
  virtual int64_t state_bytes_per_token() const { return 0; }
};

// The mixer of a registered architecture (models/registry.cpp, which lists them without a hand-kept list).
std::unique_ptr<Mixer> make_mixer(MixerKind kind, const ModelConfig& config, int64_t layer);

}  // namespace mamba::models
