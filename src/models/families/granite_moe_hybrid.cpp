// Granite-4.0-H (IBM, model_type "granitemoehybrid"): `layer_types` of Mamba-2 or attention (NoPE,
// or RoPE when position_embedding_type is "rope", softmax scale attention_multiplier); after every
// mixer a MoE (top-k logits then softmax over the k) plus a shared SwiGLU MLP, or the shared MLP
// alone when num_local_experts is 0; µP multipliers on embeddings, both residual branches and logits.
#include <cmath>

#include "core/error.h"
#include "models/families/family.h"

namespace mamba::models {
namespace {

std::vector<std::string> layer_kinds(const io::Reader& r, int64_t n_layer) {
  std::vector<std::string> kinds = io::string_list(r, "layer_types");
  if (!r.has("layer_types"))
    throw_error(ErrorCode::parse, r.source, ": field 'layer_types' is missing (one entry per layer)");
  check_layer_kinds(kinds, {"mamba", "linear_attention", "attention", "full_attention"}, n_layer, r.source,
                    "layer_types");
  for (std::string& k : kinds) k = (k == "mamba" || k == "linear_attention") ? "mamba" : "attention";
  return kinds;
}

void configure(ModelConfig& c, const std::string& source) {
  const io::Reader r{c.family_json, source, ""};
  configure_common(r, c, "rms_norm_eps");
  c.final_norm_tensor = "model.norm.weight";
  c.embed_scale = r.number("embedding_multiplier", 1.0);
  const double logits_scaling = r.number("logits_scaling", 1.0);
  if (logits_scaling == 0.0) throw_error(ErrorCode::parse, r.where("logits_scaling"), " must be non-zero");
  c.logits_scale = 1.0 / logits_scaling;
  const std::vector<std::string> kinds = layer_kinds(r, c.n_layer);
  const std::string pos = r.string("position_embedding_type", "nope");
  if (pos != "rope" && pos != "nope")
    throw_error(ErrorCode::unsupported, r.where("position_embedding_type"),
                " expected rope, nope or null, found '", pos, "'");
  const int64_t heads = r.integer("num_attention_heads", 0), kv = r.integer("num_key_value_heads", heads);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    if (kinds[static_cast<size_t>(i)] == "attention") {
      c.attn_layer_idx.push_back(i);
      if (heads <= 0 || kv <= 0 || heads % kv != 0 || c.d_model % heads != 0)
        throw_error(ErrorCode::shape, r.where("num_key_value_heads"), " ", kv,
                    " must divide num_attention_heads ", heads, ", which must divide hidden_size");
    } else {
      read_mamba_keys(r, c);
    }
    c.layer_names.push_back(kinds[static_cast<size_t>(i)] == "mamba" ? "Mamba2" : "Attn");
  }
  const int64_t E = r.integer("num_local_experts", 0);
  if (E < 0) throw_error(ErrorCode::parse, r.where("num_local_experts"), " must be >= 0, found ", E);
  if (E > 0 && (r.integer("num_experts_per_tok", 0) <= 0 || r.integer("num_experts_per_tok", 0) > E))
    throw_error(ErrorCode::parse, r.where("num_experts_per_tok"), " expected 1..", E, ", found ",
                r.integer("num_experts_per_tok", 0));
}

void build_block(const ModelConfig& c, int64_t layer, Block& b, BuildContext&) {
  const io::Reader r{c.family_json, "config.json", ""};
  const std::string kind = layer_kinds(r, c.n_layer)[static_cast<size_t>(layer)];
  b.norm_name = "input_layernorm";
  b.norm2_name = "post_attention_layernorm";
  b.mixer_scale = b.ffn_scale = static_cast<float>(r.number("residual_multiplier", 1.0));
  if (kind == "attention") {
    AttentionSpec a;
    a.d_in = a.d_out = c.d_model;
    a.n_heads = r.integer("num_attention_heads", 0);
    a.n_kv_heads = r.integer("num_key_value_heads", a.n_heads);
    a.head_dim = c.d_model / a.n_heads;
    a.qkv_bias = a.o_bias = r.boolean("attention_bias", false);
    a.softmax_scale = r.number("attention_multiplier", 1.0 / std::sqrt(static_cast<double>(a.head_dim)));
    if (r.string("position_embedding_type", "nope") == "rope") read_rope(r, a);
    b.mixer = make_attention_hf(a);
  } else {
    b.mixer = make_hf_mamba2(read_mamba_keys(r, c), r.source);
    b.mixer_prefix = "mamba.";
  }
  MlpSpec shared;
  shared.d_model = c.d_model;
  shared.hidden = r.integer("shared_intermediate_size", 0);
  shared.gate_up = "shared_mlp.input_linear.weight";
  shared.down = "shared_mlp.output_linear.weight";
  const int64_t E = r.integer("num_local_experts", 0);
  if (E == 0) {
    b.ffn = make_mlp(shared);
    return;
  }
  MoeSpec m;
  m.d_model = c.d_model;
  m.n_experts = E;
  m.hidden = r.integer("intermediate_size", 0);
  m.router.kind = ops::MoeRouter::topk_softmax;
  m.router.top_k = r.integer("num_experts_per_tok", 0);
  m.act = ops::MoeActivation::swiglu;
  m.router_weight = "block_sparse_moe.router.layer.weight";
  m.in_stacked = "block_sparse_moe.input_linear.weight";
  m.out_stacked = "block_sparse_moe.output_linear.weight";
  m.has_shared = true;
  m.shared = shared;
  b.ffn = make_moe(m);
}

}  // namespace

extern const Family kGraniteMoeHybrid{"granitemoehybrid", configure, build_block};

}  // namespace mamba::models
