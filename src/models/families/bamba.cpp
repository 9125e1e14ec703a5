// Bamba (IBM, model_type "bamba"): Mamba-2 layers with partial-RoPE GQA attention at
// `attn_layer_indices`, a SwiGLU MLP after every mixer. Llama-style names ("model.layers.i.").
#include "core/error.h"
#include "models/families/family.h"

namespace mamba::models {
namespace {

void configure(ModelConfig& c, const std::string& source) {
  const io::Reader r{c.family_json, source, ""};
  configure_common(r, c, "rms_norm_eps");
  c.attn_layer_idx = io::int_list(r, "attn_layer_indices");
  for (int64_t i : c.attn_layer_idx)
    if (i < 0 || i >= c.n_layer)
      throw_error(ErrorCode::parse, r.where("attn_layer_indices"), " entry ", i, " is outside [0, ",
                  c.n_layer, ")");
  read_mamba_keys(r, c);  // validates
  if (r.integer("num_attention_heads", 0) <= 0 ||
      r.integer("num_attention_heads", 0) %
              r.integer("num_key_value_heads", r.integer("num_attention_heads", 1)) !=
          0)
    throw_error(ErrorCode::shape, r.where("num_key_value_heads"), " must divide num_attention_heads");
  for (int64_t i = 0; i < c.n_layer; ++i)
    c.layer_names.push_back(c.layer_kind(i) == MixerKind::attention ? "Attn" : "Mamba2");
}

void build_block(const ModelConfig& c, int64_t layer, Block& b, BuildContext&) {
  const io::Reader r{c.family_json, "config.json", ""};
  b.norm_name = "input_layernorm";
  b.norm2_name = "pre_ff_layernorm";
  if (c.layer_kind(layer) == MixerKind::attention) {
    AttentionSpec a;
    a.d_in = a.d_out = c.d_model;
    a.n_heads = r.integer("num_attention_heads", 0);
    a.n_kv_heads = r.integer("num_key_value_heads", a.n_heads);
    a.head_dim = r.integer("head_dim", c.d_model / a.n_heads);
    a.qkv_bias = a.o_bias = r.boolean("attention_bias", false);
    read_rope(r, a);
    b.mixer = make_attention_hf(a);
  } else {
    b.mixer = make_hf_mamba2(read_mamba_keys(r, c), r.source);
    b.mixer_prefix = "mamba.";
  }
  MlpSpec m;
  m.d_model = c.d_model;
  m.hidden = r.integer("intermediate_size", 0);
  m.bias = r.boolean("mlp_bias", false);
  m.gate = "feed_forward.gate_proj.weight";
  m.up = "feed_forward.up_proj.weight";
  m.down = "feed_forward.down_proj.weight";
  b.ffn = make_mlp(m);
}

}  // namespace

extern const Family kBamba{"bamba", configure, build_block};

}  // namespace mamba::models
