// The families' feed-forward sublayers as stateless mixers: a gated or plain MLP and a mixture
// of experts (router -> top-k -> experts grouped by expert -> weighted sum) with an optional
// shared MLP. Separate gate / up projections run as one GEMM on a fused weight (prepare()).
#include <string>

#include "models/architectures.h"
#include "models/families/family.h"
#include "ops/linear/linear.h"
#include "ops/moe/moe.h"

namespace mamba::models {
namespace {

std::string expert_name(const std::string& pattern, int64_t e) {
  const size_t at = pattern.find("{e}");
  return at == std::string::npos ? pattern
                                 : pattern.substr(0, at) + std::to_string(e) + pattern.substr(at + 3);
}

// MLP: h = x·W_in^T ([gate; up] or up) -> act -> ·W_down^T.
class Mlp final : public Mixer {
public:
  explicit Mlp(const MlpSpec& s) : s_(s) {}

  MixerKind kind() const override { return MixerKind::mlp; }
  void visit_params(const ParamVisitor& fn) override {
    const int64_t D = s_.d_model, I = s_.hidden;
    if (!s_.gated) {
      fn({s_.up, &w_up, {I, D}});
      if (s_.bias) fn({bias_name(s_.up), &b_up, {I}, true, Init::zeros()});
    } else if (!s_.gate_up.empty()) {
      fn({s_.gate_up, &w_gate_up, {2 * I, D}});
      if (s_.bias) fn({bias_name(s_.gate_up), &b_gate_up, {2 * I}, true, Init::zeros()});
    } else {
      fn({s_.gate, &w_gate, {I, D}});
      fn({s_.up, &w_up, {I, D}});
      if (s_.bias) {
        fn({bias_name(s_.gate), &b_gate, {I}, true, Init::zeros()});
        fn({bias_name(s_.up), &b_up, {I}, true, Init::zeros()});
      }
    }
    fn({s_.down, &w_down, {D, I}});
    if (s_.bias) fn({bias_name(s_.down), &b_down, {D}, true, Init::zeros()});
    if (s_.adapter_rank > 0) {
      fn({s_.adapter + ".0.weight", &adapter_a, {s_.adapter_rank, D}});
      fn({s_.adapter + ".1.weight", &adapter_b, {(s_.gated ? 2 : 1) * I, s_.adapter_rank}});
    }
  }

  void prepare(ops::Exec& exec) override {
    if (!s_.gated) {
      w_in = w_up;
      b_in = b_up;
    } else if (!s_.gate_up.empty()) {
      w_in = w_gate_up;
      b_in = b_gate_up;
    } else {
      assign_derived(w_in, stack_rows({&w_gate, &w_up}));
      if (s_.bias) assign_derived(b_in, stack_rows({&b_gate, &b_up}));
    }
  }

  LayerState new_state(int64_t) const override { return {}; }
  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState&, int64_t) const override {
    return run(exec, u, nullptr);
  }
  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    return run(exec, u, &saved_as<Saved>(saved));
  }

  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    Mlp& g = static_cast<Mlp&>(grads);
    const Tensor da = ops::linear_bwd(exec, dout, s.a, w_down, g.w_down, g.b_down);
    const Tensor dh = s_.gated ? ops::gated_act_bwd(exec, da, s.h, s_.act, /*gate_first=*/true)
                               : ops::activation_bwd(exec, da, s.h, s_.act);
    const bool fused_param = !s_.gated || !s_.gate_up.empty();
    Tensor dw, db;
    if (fused_param) {
      dw = s_.gated ? g.w_gate_up : g.w_up;
      db = s_.gated ? g.b_gate_up : g.b_up;
    } else {
      dw = Tensor::zeros(w_in.shape(), DType::f32, dout.device());
      if (s_.bias) db = Tensor::zeros(b_in.shape(), DType::f32, dout.device());
    }
    Tensor du = ops::linear_bwd(exec, dh, s.u, w_in, dw, db);
    if (!fused_param) {
      add_rows(exec, g.w_gate, dw, 0);
      add_rows(exec, g.w_up, dw, s_.hidden);
      if (s_.bias) {
        add_rows(exec, g.b_gate, db, 0);
        add_rows(exec, g.b_up, db, s_.hidden);
      }
    }
    if (s_.adapter_rank > 0) {
      Tensor none;
      const Tensor dmid = ops::linear_bwd(exec, dh, s.mid, adapter_b, g.adapter_b, none);
      ops::add_(exec, du, ops::linear_bwd(exec, dmid, s.u, adapter_a, g.adapter_a, none));
    }
    return du;
  }

  int64_t state_bytes_fixed() const override { return 0; }

private:
  struct Saved final : MixerSaved {
    Tensor u, h, a, mid;
  };
  static std::string bias_name(const std::string& weight) {
    return weight.substr(0, weight.size() - std::string("weight").size()) + "bias";
  }

  Tensor run(ops::Exec& exec, const Tensor& u, Saved* saved) const {
    Tensor h = ops::linear(exec, u, w_in, b_in);
    Tensor mid;
    if (s_.adapter_rank > 0) {
      mid = ops::linear(exec, u, adapter_a);
      ops::add_(exec, h, ops::linear(exec, mid, adapter_b));
    }
    Tensor a =
        s_.gated ? ops::gated_act(exec, h, s_.act, /*gate_first=*/true) : ops::activation(exec, h, s_.act);
    if (saved) {
      saved->u = u;
      saved->h = h;
      saved->a = a;
      saved->mid = mid;
    }
    return ops::linear(exec, a, w_down, b_down);
  }

  MlpSpec s_;
  Tensor w_gate, w_up, w_gate_up, w_down, b_gate, b_up, b_gate_up, b_down, adapter_a, adapter_b;
  Tensor w_in, b_in;  // derived: [gate; up] or up
};

// Mixture of experts (+ shared MLP).
class Moe final : public Mixer {
public:
  explicit Moe(const MoeSpec& s) : s_(s), shared_(s.has_shared ? std::make_unique<Mlp>(s.shared) : nullptr) {
    const auto E = static_cast<size_t>(s.n_experts);
    gate_.resize(E);
    up_.resize(E);
    down_.resize(E);
  }

  MixerKind kind() const override { return MixerKind::moe; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t D = s_.d_model, I = s_.hidden, E = s_.n_experts;
    const bool gated = s_.act != ops::MoeActivation::relu2;
    fn({s_.router_weight, &router_w, {E, D}});
    if (!s_.correction_bias.empty()) fn({s_.correction_bias, &correction_bias, {E}, true});
    if (!s_.in_stacked.empty()) {
      fn({s_.in_stacked, &in_stacked, {E, (gated ? 2 : 1) * I, D}});
      fn({s_.out_stacked, &out_stacked, {E, D, I}});
    } else {
      for (int64_t e = 0; e < E; ++e) {
        if (gated) fn({expert_name(s_.expert_gate, e), &gate_[e], {I, D}});
        fn({expert_name(s_.expert_up, e), &up_[e], {I, D}});
        fn({expert_name(s_.expert_down, e), &down_[e], {D, I}});
      }
    }
    if (shared_) shared_->visit_params(fn);
  }

  void prepare(ops::Exec& exec) override {
    const int64_t E = s_.n_experts;
    const bool gated = s_.act != ops::MoeActivation::relu2;
    experts_.act = s_.act;
    experts_.w_in.assign(static_cast<size_t>(E), Tensor());
    experts_.w_out.assign(static_cast<size_t>(E), Tensor());
    for (int64_t e = 0; e < E; ++e) {
      if (!s_.in_stacked.empty()) {
        experts_.w_in[e] = in_stacked.select(0, e);
        experts_.w_out[e] = out_stacked.select(0, e);
      } else {
        experts_.w_in[e] = gated ? stack_rows({&gate_[e], &up_[e]}) : up_[e];
        experts_.w_out[e] = down_[e];
      }
    }
    router_ = s_.router;
    router_.correction_bias = correction_bias;
    if (shared_) shared_->prepare(exec);
  }

  LayerState new_state(int64_t) const override { return {}; }
  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState&, int64_t) const override {
    return run(exec, u, nullptr);
  }
  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    return run(exec, u, &saved_as<Saved>(saved));
  }

  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    Moe& g = static_cast<Moe&>(grads);
    const int64_t E = s_.n_experts, D = s_.d_model;
    const bool gated = s_.act != ops::MoeActivation::relu2, stacked = !s_.in_stacked.empty();
    const Tensor dy = dout.contiguous().view({-1, D});
    std::vector<Tensor> dw_in(static_cast<size_t>(E)), dw_out(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      if (stacked) {  // views into the stacked gradients: accumulated in place
        dw_in[e] = g.in_stacked.select(0, e);
        dw_out[e] = g.out_stacked.select(0, e);
      } else {
        dw_in[e] = gated ? Tensor::zeros(experts_.w_in[e].shape(), DType::f32, dout.device()) : g.up_[e];
        dw_out[e] = g.down_[e];
      }
    }
    Tensor dweights;
    Tensor dx = ops::moe_experts_bwd(exec, dy, s.moe, experts_, dweights, dw_in, dw_out);
    if (!stacked && gated)
      for (int64_t e = 0; e < E; ++e) {
        add_rows(exec, g.gate_[e], dw_in[e], 0);
        add_rows(exec, g.up_[e], dw_in[e], s_.hidden);
      }
    const Tensor dlogits = ops::moe_route_bwd(exec, dweights, s.logits, s.routing, router_);
    Tensor none;
    ops::add_(exec, dx, ops::linear_bwd(exec, dlogits, s.x, router_w, g.router_w, none));
    Tensor du = dx.view(dout.shape());
    if (shared_) ops::add_(exec, du, shared_->backward(exec, dout, *s.shared, *g.shared_));
    return du;
  }

  int64_t state_bytes_fixed() const override { return 0; }

private:
  struct Saved final : MixerSaved {
    Tensor x, logits;
    ops::MoeRouting routing;
    ops::MoeSaved moe;
    std::unique_ptr<MixerSaved> shared;
  };

  Tensor run(ops::Exec& exec, const Tensor& u, Saved* saved) const {
    const Tensor x = u.contiguous().view({-1, s_.d_model});  // [T, D]
    const Tensor logits = ops::linear(exec, x, router_w);    // [T, E]
    const ops::MoeRouting routing = ops::moe_route(exec, logits, router_);
    Tensor y;
    if (saved) {
      y = ops::moe_experts_train(exec, x, routing, experts_, saved->moe);
      saved->x = x;
      saved->logits = logits;
      saved->routing = routing;
    } else {
      y = ops::moe_experts(exec, x, routing, experts_);
    }
    y = y.view(u.shape());
    if (shared_) {
      LayerState none;
      ops::add_(exec, y,
                saved ? shared_->forward_train(exec, u, saved->shared) : shared_->forward(exec, u, none, 0));
    }
    return y;
  }

  MoeSpec s_;
  std::unique_ptr<Mlp> shared_;
  Tensor router_w, correction_bias, in_stacked, out_stacked;
  std::vector<Tensor> gate_, up_, down_;
  ops::MoeExperts experts_;      // derived: per-expert [gate; up] (or up) and down
  ops::MoeRouterParams router_;  // derived: the spec's router with the loaded correction bias
};

}  // namespace

std::unique_ptr<Mixer> make_mlp(const MlpSpec& s) {
  return std::make_unique<Mlp>(s);
}
std::unique_ptr<Mixer> make_moe(const MoeSpec& s) {
  return std::make_unique<Moe>(s);
}

}  // namespace mamba::models
