// Nemotron-H (NVIDIA, model_type "nemotron_h"): one mixer per block from `layers_block_type`
// (or the older `hybrid_override_pattern`: M = Mamba-2, * = attention, - = MLP, E = MoE):
// Mamba-2 with d_inner = heads·head_dim and the grouped gated norm, NoPE GQA attention, a
// non-gated relu² MLP, or a MoE with a sigmoid router + correction bias, top-k groups, normalized
// top-k, routed scaling and a shared expert. Names "backbone.layers.i.{norm,mixer}".
#include "core/error.h"
#include "models/families/family.h"

namespace mamba::models {
namespace {

// Layer kinds in one spelling: mamba, attention, mlp, moe.
std::vector<std::string> layer_kinds(const io::Reader& r, int64_t n_layer) {
  std::vector<std::string> kinds;
  if (r.has("layers_block_type")) {
    kinds = io::string_list(r, "layers_block_type");
    check_layer_kinds(kinds, {"mamba", "linear_attention", "attention", "full_attention", "mlp", "moe"},
                      n_layer, r.source, "layers_block_type");
    for (std::string& k : kinds) {
      if (k == "linear_attention") k = "mamba";
      if (k == "full_attention") k = "attention";
    }
    return kinds;
  }
  const std::string pattern = r.string("hybrid_override_pattern", "");
  if (pattern.empty())
    throw_error(ErrorCode::parse, r.source,
                ": neither 'layers_block_type' nor 'hybrid_override_pattern' is set");
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char ch = pattern[i];
    if (ch == 'M')
      kinds.push_back("mamba");
    else if (ch == '*')
      kinds.push_back("attention");
    else if (ch == '-')
      kinds.push_back("mlp");
    else if (ch == 'E')
      kinds.push_back("moe");
    else
      throw_error(ErrorCode::unsupported, r.where("hybrid_override_pattern"), " character ", i,
                  " expected one of M * - E, found '", std::string(1, ch), "'");
  }
  if (static_cast<int64_t>(kinds.size()) != n_layer)
    throw_error(ErrorCode::shape, r.where("hybrid_override_pattern"), " has ", kinds.size(),
                " layers, expected num_hidden_layers = ", n_layer);
  return kinds;
}

Mamba2Spec mamba_spec(const io::Reader& r, const ModelConfig& c) {
  Mamba2Spec s;
  s.d_model = c.d_model;
  s.n_heads = r.integer("mamba_num_heads", 128);
  s.head_dim = r.integer("mamba_head_dim", 64);
  s.n_groups = r.integer("n_groups", 8);
  s.d_state = r.integer("ssm_state_size", 128);
  s.d_conv = r.integer("conv_kernel", 4);
  s.chunk_size = r.integer("chunk_size", 128);
  s.conv_bias = r.boolean("use_conv_bias", true);
  s.proj_bias = r.boolean("use_bias", false);
  s.norm_eps = c.norm_eps;
  read_time_step_limit(r, s);
  return s;
}

void configure(ModelConfig& c, const std::string& source) {
  const io::Reader r{c.family_json, source, ""};
  const int64_t pattern_len = r.has("layers_block_type")
                                  ? static_cast<int64_t>(r.j.at("layers_block_type").size())
                                  : static_cast<int64_t>(r.string("hybrid_override_pattern", "").size());
  configure_common(r, c, "layer_norm_epsilon", pattern_len);
  c.embedding_tensor = "backbone.embeddings.weight";
  c.layer_prefix = "backbone.layers.";
  c.final_norm_tensor = "backbone.norm_f.weight";
  c.tie_embeddings = r.boolean("tie_word_embeddings", false);
  c.embedding_pad_id = -1;  // NemotronHModel's embedding has no padding_idx
  const std::vector<std::string> kinds = layer_kinds(r, c.n_layer);
  if (r.has("moe_latent_size"))
    throw_error(ErrorCode::unsupported, r.where("moe_latent_size"),
                " (latent MoE projections) is not supported");
  if (r.has("mlp_hidden_act") && r.string("mlp_hidden_act", "relu2") != "relu2")
    throw_error(ErrorCode::unsupported, r.where("mlp_hidden_act"), " expected relu2, found '",
                r.string("mlp_hidden_act", ""), "'");
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string& k = kinds[static_cast<size_t>(i)];
    if (k == "attention") c.attn_layer_idx.push_back(i);
    if (k == "mamba") mamba_spec(r, c);
    c.layer_names.push_back(k == "mamba" ? "Mamba2" : k == "attention" ? "Attn" : k == "mlp" ? "MLP" : "MoE");
  }
  const int64_t heads = r.integer("num_attention_heads", 0), kv = r.integer("num_key_value_heads", heads);
  if (!c.attn_layer_idx.empty() && (heads <= 0 || kv <= 0 || heads % kv != 0))
    throw_error(ErrorCode::shape, r.where("num_key_value_heads"), " ", kv,
                " must divide num_attention_heads ", heads);
  const int64_t E = r.integer("n_routed_experts", 0), groups = r.integer("n_group", 1);
  for (const std::string& k : kinds)
    if (k == "moe") {
      if (E <= 0 || groups <= 0 || E % groups != 0)
        throw_error(ErrorCode::shape, r.where("n_group"), " ", groups, " must divide n_routed_experts ", E);
      const int64_t k_top = r.integer("num_experts_per_tok", 0);
      if (k_top <= 0 || k_top > E)
        throw_error(ErrorCode::parse, r.where("num_experts_per_tok"), " expected 1..", E, ", found ", k_top);
    }
}

void build_block(const ModelConfig& c, int64_t layer, Block& b, BuildContext&) {
  const io::Reader r{c.family_json, "config.json", ""};
  const std::string kind = layer_kinds(r, c.n_layer)[static_cast<size_t>(layer)];
  if (kind == "mamba") {
    b.mixer = make_hf_mamba2(mamba_spec(r, c), r.source);
  } else if (kind == "attention") {
    AttentionSpec a;
    a.prefix = "mixer.";
    a.d_in = a.d_out = c.d_model;
    a.n_heads = r.integer("num_attention_heads", 0);
    a.n_kv_heads = r.integer("num_key_value_heads", a.n_heads);
    a.head_dim = r.integer("head_dim", c.d_model / a.n_heads);
    a.qkv_bias = a.o_bias = r.boolean("attention_bias", false);
    b.mixer = make_attention_hf(a);
  } else if (kind == "mlp") {
    MlpSpec m;
    m.d_model = c.d_model;
    m.hidden = r.integer("intermediate_size", 0);
    m.gated = false;
    m.act = ops::GateAct::relu2;
    m.bias = r.boolean("mlp_bias", false);
    m.up = "mixer.up_proj.weight";
    m.down = "mixer.down_proj.weight";
    b.mixer = make_mlp(m);
  } else {
    MoeSpec m;
    m.d_model = c.d_model;
    m.n_experts = r.integer("n_routed_experts", 0);
    m.hidden = r.integer("moe_intermediate_size", 0);
    m.router.kind = ops::MoeRouter::sigmoid_grouped;
    m.router.top_k = r.integer("num_experts_per_tok", 0);
    m.router.norm_topk = r.boolean("norm_topk_prob", true);
    m.router.routed_scaling = static_cast<float>(r.number("routed_scaling_factor", 1.0));
    m.router.n_group = r.integer("n_group", 1);
    m.router.topk_group = r.integer("topk_group", 1);
    m.act = ops::MoeActivation::relu2;
    m.router_weight = "mixer.gate.weight";
    m.correction_bias = "mixer.gate.e_score_correction_bias";
    m.expert_up = "mixer.experts.{e}.up_proj.weight";
    m.expert_down = "mixer.experts.{e}.down_proj.weight";
    m.has_shared = r.integer("n_shared_experts", 1) > 0;
    m.shared.d_model = c.d_model;
    m.shared.hidden = r.integer("moe_shared_expert_intermediate_size", 0);
    m.shared.gated = false;
    m.shared.act = ops::GateAct::relu2;
    m.shared.up = "mixer.shared_experts.up_proj.weight";
    m.shared.down = "mixer.shared_experts.down_proj.weight";
    b.mixer = make_moe(m);
  }
}

}  // namespace

extern const Family kNemotronH{"nemotron_h", configure, build_block};

}  // namespace mamba::models
