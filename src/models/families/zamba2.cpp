// Zamba2 (Zyphra, model_type "zamba2"): Mamba-2 layers, and at the "hybrid" layers a shared
// transformer block that reads concat(stream, token embeddings) before the layer's Mamba-2:
//
//   t   = shared_transformer(concat(h, emb))    [no residuals inside]
//       = mlp(pre_ff_norm(attn(input_norm(concat(h, emb)))))
//   out = h + mamba(input_layernorm(h + linear(t)))
//
// attention over 2·hidden (head_dim = 2·hidden / heads, scores scaled by (head_dim / 2)^-0.5,
// RoPE on the whole head when use_mem_rope), o_proj to hidden; the MLP is act(gate)·up from one
// gate_up_proj. num_mem_blocks shared blocks are used round-robin by the hybrid layers: hybrid use
// j runs block j % num_mem_blocks with its own LoRA adapters (index j of the block's adapter lists)
// on q/k/v and on gate_up_proj.
//
// Shared weights: save_pretrained keeps one copy of a block used by several layers. Here every
// block's weights (and the adapters of all its uses) are visited once, under the name of the FIRST
// hybrid layer that uses it ("model.layers.<first>.shared_transformer.*"); the block's later users
// hold the same tensors (copied handles after every visit of the first user, so loading, moving,
// dtype changes and gradients (new_grads) all alias one buffer, and gradients of every use add up).
//
// Notes on the reference (transformers modeling_zamba2.py): the Mamba mixer's conv1d always has a
// bias, its gated norm uses eps 1e-5, and the CPU path clamps dt from below at time_step_min
// (the CUDA kernels use time_step_limit instead); the config recomputes attention_hidden_size,
// attention_head_dim, mamba_headdim and hybrid_layer_ids from the other keys.
#include <algorithm>
#include <cmath>
#include <map>

#include "core/checked.h"
#include "core/error.h"
#include "models/architectures.h"
#include "models/families/family.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/norm/norm.h"

namespace mamba::models {
namespace {

bool is_hybrid(const std::string& kind) {
  return kind == "hybrid";
}

std::vector<std::string> layer_kinds(const io::Reader& r, const ModelConfig& c) {
  if (!r.has("layers_block_type"))
    throw_error(ErrorCode::parse, r.where("layers_block_type"), " is required");
  const std::vector<std::string> kinds = io::string_list(r, "layers_block_type");
  check_layer_kinds(kinds, {"mamba", "linear_attention", "hybrid"}, c.n_layer, r.source, "layers_block_type");
  return kinds;
}

std::vector<int64_t> hybrid_ids(const io::Reader& r, const ModelConfig& c) {
  const std::vector<std::string> kinds = layer_kinds(r, c);
  std::vector<int64_t> ids;
  for (size_t i = 0; i < kinds.size(); ++i)
    if (is_hybrid(kinds[i])) ids.push_back(static_cast<int64_t>(i));
  return ids;
}

ops::GateAct gate_act(const io::Reader& r) {
  const std::string act = r.string("hidden_act", "gelu");
  if (act == "gelu") return ops::GateAct::gelu;
  if (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast") return ops::GateAct::gelu_tanh;
  if (act == "silu" || act == "swish") return ops::GateAct::silu;
  throw_error(ErrorCode::unsupported, r.where("hidden_act"),
              " expected gelu, gelu_pytorch_tanh or silu, found '", act, "'");
}

Mamba2Spec mamba_spec(const io::Reader& r, const ModelConfig& c) {
  Mamba2Spec s;
  s.d_model = c.d_model;
  s.n_heads = r.integer("n_mamba_heads", 8);
  const double expand = r.number("mamba_expand", 2);
  const int64_t d_inner = checked_to_int64(expand * static_cast<double>(c.d_model), 0, int64_t{1} << 22,
                                           r.where("mamba_expand") + " * hidden_size");
  if (s.n_heads <= 0 || d_inner <= 0 || d_inner % s.n_heads != 0)
    throw_error(ErrorCode::shape, r.where("n_mamba_heads"), " ", s.n_heads,
                " must divide mamba_expand x hidden_size = ", d_inner);
  s.head_dim = d_inner / s.n_heads;
  if (r.has("mamba_headdim") && r.integer("mamba_headdim", 0) != s.head_dim)
    throw_error(ErrorCode::shape, r.where("mamba_headdim"),
                " expected mamba_expand x hidden_size / n_mamba_heads = ", s.head_dim, ", found ",
                r.integer("mamba_headdim", 0));
  s.n_groups = r.integer("mamba_ngroups", 1);
  s.d_state = r.integer("mamba_d_state", 64);
  s.d_conv = r.integer("mamba_d_conv", 4);
  s.chunk_size = r.integer("chunk_size", 256);
  s.conv_bias = true;  // the reference's conv1d always has a bias (use_conv_bias only gates decode)
  s.proj_bias = r.boolean("add_bias_linear", false);
  s.norm_eps = 1e-5;  // Zamba2RMSNormGated(eps=1e-5)
  // The reference's CPU path: dt = clamp(softplus(dt + dt_bias), min=time_step_min).
  s.dt_limit_lo = r.number("time_step_min", 0.001);
  s.dt_limit_hi = INFINITY;
  for (auto [key, v] : {std::pair<const char*, int64_t>{"mamba_ngroups", s.n_groups},
                        {"mamba_d_state", s.d_state},
                        {"mamba_d_conv", s.d_conv},
                        {"chunk_size", s.chunk_size}})
    if (v <= 0) throw_error(ErrorCode::parse, r.where(key), " must be positive, found ", v);
  if (s.n_heads % s.n_groups != 0)
    throw_error(ErrorCode::shape, r.where("mamba_ngroups"), " ", s.n_groups, " must divide n_mamba_heads ",
                s.n_heads);
  return s;
}

class Zamba2Hybrid;

// The hybrid layers that run one shared block, in layer order; users[0] owns the names.
struct SharedGroup {
  std::vector<Zamba2Hybrid*> users;
};

bool is_adapter(const std::string& name) {
  return name.find("adapter_list.") != std::string::npos;
}

class Zamba2Hybrid final : public Mixer {
public:
  Zamba2Hybrid(const ModelConfig& c, const io::Reader& r, int64_t use, std::shared_ptr<SharedGroup> group)
      : D_(c.d_model), eps_(static_cast<float>(c.norm_eps)), group_(std::move(group)) {
    const int64_t heads = r.integer("num_attention_heads", 32);
    AttentionSpec a;
    a.prefix = "shared_transformer.self_attn.";
    a.d_in = 2 * D_;
    a.d_out = D_;
    a.n_heads = heads;
    a.n_kv_heads = r.integer("num_key_value_heads", heads);
    a.head_dim = 2 * D_ / heads;
    a.softmax_scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim) / 2.0);
    if (r.boolean("use_mem_rope", false)) read_rope(r, a);
    const int64_t rank = r.integer("adapter_rank", 128);
    const std::string j = std::to_string(use);
    if (r.boolean("use_shared_attention_adapter", false)) {
      a.adapter_rank = rank;
      a.adapter_q = "linear_q_adapter_list." + j;
      a.adapter_k = "linear_k_adapter_list." + j;
      a.adapter_v = "linear_v_adapter_list." + j;
    }
    attn_ = make_attention_hf(a);
    MlpSpec m;
    m.d_model = D_;
    m.hidden = r.integer("intermediate_size", 4 * D_);
    m.act = gate_act(r);
    m.gated = true;
    m.bias = r.boolean("add_bias_linear", false);
    m.gate_up = "shared_transformer.feed_forward.gate_up_proj.weight";
    m.down = "shared_transformer.feed_forward.down_proj.weight";
    m.adapter_rank = rank;  // the reference always builds the MLP adapters
    m.adapter = "shared_transformer.feed_forward.gate_up_proj_adapter_list." + j;
    mlp_ = make_mlp(m);
    mamba_ = make_hf_mamba2(mamba_spec(r, c), r.source);
    group_->users.push_back(this);
  }
  ~Zamba2Hybrid() override {
    auto& u = group_->users;
    u.erase(std::remove(u.begin(), u.end(), this), u.end());
  }

  MixerKind kind() const override { return MixerKind::mamba2; }
  std::string label() const override { return "Hybrid"; }
  bool reads_embeddings() const override { return true; }

  void visit_params(const ParamVisitor& fn) override {
    if (owner()) {
      fn({"shared_transformer.input_layernorm.weight", &norm_in_, {2 * D_}, true, Init::ones()});
      for (Zamba2Hybrid* u : group_->users)
        if (u != this) u->norm_in_ = norm_in_;
      visit_shared(fn, &Zamba2Hybrid::attn_);
      fn({"shared_transformer.pre_ff_layernorm.weight", &norm_ff_, {D_}, true, Init::ones()});
      for (Zamba2Hybrid* u : group_->users)
        if (u != this) u->norm_ff_ = norm_ff_;
      visit_shared(fn, &Zamba2Hybrid::mlp_);
    }
    fn({"linear.weight", &linear_, {D_, D_}});
    fn({"mamba_decoder.input_layernorm.weight", &norm_dec_, {D_}, true, Init::ones()});
    mamba_->visit_params([&](const ParamRef& p) {
      const std::string name = p.name.rfind("mixer.", 0) == 0 ? p.name.substr(6) : p.name;
      fn(p.renamed("mamba_decoder.mamba." + name));
    });
  }

  void prepare(ops::Exec& exec) override {
    attn_->prepare(exec);
    mlp_->prepare(exec);
    mamba_->prepare(exec);
  }

  LayerState new_state(int64_t batch) const override {
    LayerState st = mamba_->new_state(batch);
    LayerState a = attn_->new_state(batch);
    st.k_cache = a.k_cache;
    st.v_cache = a.v_cache;
    return st;
  }

  Tensor forward(ops::Exec& exec, const Tensor&, LayerState&, int64_t) const override { no_emb(); }
  Tensor forward_train(ops::Exec& exec, const Tensor&, std::unique_ptr<MixerSaved>&) const override {
    no_emb();
  }
  Tensor backward(ops::Exec& exec, const Tensor&, const MixerSaved&, Mixer&) const override { no_emb(); }

  Tensor forward_emb(ops::Exec& exec, const Tensor& u, const Tensor& emb, LayerState& st,
                     int64_t pos) const override {
    const Tensor xn = ops::rms_norm(exec, ops::concat_last(exec, u, emb), norm_in_, eps_);
    const Tensor a = attn_->forward(exec, xn, st, pos);
    LayerState none;
    const Tensor t =
        ops::linear(exec, mlp_->forward(exec, ops::rms_norm(exec, a, norm_ff_, eps_), none, pos), linear_);
    Tensor h = u.contiguous().copy();
    ops::add_(exec, h, t);
    return mamba_->forward(exec, ops::rms_norm(exec, h, norm_dec_, eps_), st, pos);
  }

  Tensor forward_train_emb(ops::Exec& exec, const Tensor& u, const Tensor& emb,
                           std::unique_ptr<MixerSaved>& saved) const override {
    Saved& s = saved_as<Saved>(saved);
    s.x = ops::concat_last(exec, u, emb);
    s.a = attn_->forward_train(exec, ops::rms_norm(exec, s.x, norm_in_, eps_), s.attn);
    s.m = mlp_->forward_train(exec, ops::rms_norm(exec, s.a, norm_ff_, eps_), s.mlp);
    s.h = u.contiguous().copy();
    ops::add_(exec, s.h, ops::linear(exec, s.m, linear_));
    return mamba_->forward_train(exec, ops::rms_norm(exec, s.h, norm_dec_, eps_), s.mamba);
  }

  Tensor backward_emb(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads,
                      Tensor& demb) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    Zamba2Hybrid& g = static_cast<Zamba2Hybrid&>(grads);
    Tensor none;
    const Tensor dhn = mamba_->backward(exec, dout, *s.mamba, *g.mamba_);
    Tensor du =
        ops::rms_norm_bwd(exec, dhn, s.h, norm_dec_, eps_, g.norm_dec_);  // dh: the residual and linear(t)
    const Tensor dm = ops::linear_bwd(exec, du, s.m, linear_, g.linear_, none);
    const Tensor dan = mlp_->backward(exec, dm, *s.mlp, *g.mlp_);
    const Tensor da = ops::rms_norm_bwd(exec, dan, s.a, norm_ff_, eps_, g.norm_ff_);
    const Tensor dxn = attn_->backward(exec, da, *s.attn, *g.attn_);
    const Tensor dx = ops::rms_norm_bwd(exec, dxn, s.x, norm_in_, eps_, g.norm_in_);
    ops::add_(exec, du, columns(dx, 0, D_).contiguous());
    ops::add_(exec, demb, columns(dx, D_, D_).contiguous());
    return du;
  }

  int64_t state_bytes_fixed() const override { return mamba_->state_bytes_fixed(); }
  int64_t state_bytes_per_token() const override { return attn_->state_bytes_per_token(); }

private:
  struct Saved final : MixerSaved {
    Tensor x, a, m, h;  // concat(u, emb), attention output, MLP output, u + linear(m)
    std::unique_ptr<MixerSaved> attn, mlp, mamba;
  };

  [[noreturn]] static void no_emb() {
    throw_error(ErrorCode::unsupported,
                "a Zamba2 hybrid layer runs only with the token embeddings (forward_emb)");
  }
  bool owner() const { return !group_->users.empty() && group_->users.front() == this; }

  // The owner visits the part's base weights and its own adapters, copying each base tensor's
  // handle into the later users after the visit; then it visits the later users' adapters.
  void visit_shared(const ParamVisitor& fn, std::unique_ptr<Mixer> Zamba2Hybrid::*part) {
    std::vector<std::map<std::string, Tensor*>> others;
    for (Zamba2Hybrid* u : group_->users) {
      if (u == this) continue;
      others.emplace_back();
      (u->*part)->visit_params([&](const ParamRef& p) { others.back()[p.name] = p.tensor; });
    }
    (this->*part)->visit_params([&](const ParamRef& p) {
      fn(p);
      if (is_adapter(p.name)) return;
      for (auto& names : others) *names.at(p.name) = *p.tensor;
    });
    for (Zamba2Hybrid* u : group_->users)
      if (u != this)
        (u->*part)->visit_params([&](const ParamRef& p) {
          if (is_adapter(p.name)) fn(p);
        });
  }

  int64_t D_;
  float eps_;
  std::shared_ptr<SharedGroup> group_;
  std::unique_ptr<Mixer> attn_, mlp_, mamba_;
  Tensor norm_in_, norm_ff_;  // shared: [2·hidden], [hidden]
  Tensor linear_, norm_dec_;  // this layer's: [hidden, hidden], [hidden]
};

void configure(ModelConfig& c, const std::string& source) {
  const io::Reader r{c.family_json, source, ""};
  configure_common(r, c, "rms_norm_eps");
  const std::vector<int64_t> hybrid = hybrid_ids(r, c);
  if (r.has("hybrid_layer_ids") && io::int_list(r, "hybrid_layer_ids") != hybrid)
    throw_error(ErrorCode::parse, r.where("hybrid_layer_ids"),
                " does not match the 'hybrid' entries of layers_block_type");
  mamba_spec(r, c);  // validates
  gate_act(r);
  const int64_t heads = r.integer("num_attention_heads", 32), kv = r.integer("num_key_value_heads", heads);
  if (heads <= 0 || (2 * c.d_model) % heads != 0)
    throw_error(ErrorCode::shape, r.where("num_attention_heads"), " ", heads,
                " must divide 2 x hidden_size = ", 2 * c.d_model);
  if (kv <= 0 || heads % kv != 0)
    throw_error(ErrorCode::shape, r.where("num_key_value_heads"), " ", kv,
                " must divide num_attention_heads ", heads);
  if (r.has("attention_hidden_size") && r.integer("attention_hidden_size", 0) != 2 * c.d_model)
    throw_error(ErrorCode::shape, r.where("attention_hidden_size"),
                " expected 2 x hidden_size = ", 2 * c.d_model, ", found ",
                r.integer("attention_hidden_size", 0));
  if (r.has("attention_head_dim") && r.integer("attention_head_dim", 0) != 2 * c.d_model / heads)
    throw_error(ErrorCode::shape, r.where("attention_head_dim"),
                " expected 2 x hidden_size / num_attention_heads = ", 2 * c.d_model / heads, ", found ",
                r.integer("attention_head_dim", 0));
  for (const char* key : {"num_mem_blocks", "adapter_rank", "intermediate_size"})
    if (r.integer(key, 1) <= 0)
      throw_error(ErrorCode::parse, r.where(key), " must be positive, found ", r.integer(key, 1));
  if (r.boolean("use_mem_rope", false)) {
    AttentionSpec a;
    a.head_dim = 2 * c.d_model / heads;
    read_rope(r, a);  // validates
  }
  c.attn_layer_idx = hybrid;
  for (int64_t i = 0; i < c.n_layer; ++i)
    c.layer_names.push_back(std::find(hybrid.begin(), hybrid.end(), i) != hybrid.end() ? "Hybrid" : "Mamba2");
}

void build_block(const ModelConfig& c, int64_t layer, Block& b, BuildContext& ctx) {
  const io::Reader r{c.family_json, "config.json", ""};
  const std::vector<int64_t> hybrid = hybrid_ids(r, c);
  const auto it = std::find(hybrid.begin(), hybrid.end(), layer);
  if (it == hybrid.end()) {
    b.norm_name = "input_layernorm";
    b.mixer = make_hf_mamba2(mamba_spec(r, c), r.source);
    b.mixer_prefix = "mamba.";
    return;
  }
  const int64_t use = it - hybrid.begin(), n_blocks = r.integer("num_mem_blocks", 1), block = use % n_blocks;
  // Model::build creates the layers in order, so a block's first user (which creates the group)
  // is built before its later users, which find it in the build's context.
  std::shared_ptr<void>& slot = ctx.shared["zamba2.shared_block." + std::to_string(block)];
  if (use < n_blocks) slot = std::make_shared<SharedGroup>();
  auto group = std::static_pointer_cast<SharedGroup>(slot);
  if (!group)
    throw_error(ErrorCode::unsupported, "zamba2: layer ", layer,
                " built before the first user of shared block ", block);
  b.has_norm = false;
  b.mixer = std::make_unique<Zamba2Hybrid>(c, r, use, group);
}

}  // namespace

extern const Family kZamba2{"zamba2", configure, build_block};

}  // namespace mamba::models
