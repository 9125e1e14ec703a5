// Jamba (AI21, model_type "jamba"): Mamba-1 layers with learned RMSNorms on dt, B and C, and
// attention without positional encoding where layer % attn_layer_period == attn_layer_offset;
// after every mixer a softmax-router MoE (top-k of the softmax, not renormalized) where
// layer % expert_layer_period == expert_layer_offset and num_experts > 1, else a SwiGLU MLP.
#include "core/checked.h"
#include "core/error.h"
#include "models/families/family.h"
#include "models/mamba1.h"

namespace mamba::models {
namespace {

// A layer period: 0 would be a division by zero below.
int64_t period(const io::Reader& r, const char* key, int64_t def) {
  const int64_t p = r.integer(key, def);
  if (p <= 0) throw_error(ErrorCode::parse, r.where(key), " expected a positive integer, found ", p);
  return p;
}

bool is_attention(const io::Reader& r, int64_t layer) {
  return layer % period(r, "attn_layer_period", 8) == r.integer("attn_layer_offset", 4);
}
bool is_expert(const io::Reader& r, int64_t layer) {
  return r.integer("num_experts", 16) > 1 &&
         layer % period(r, "expert_layer_period", 2) == r.integer("expert_layer_offset", 1);
}

void configure(ModelConfig& c, const std::string& source) {
  const io::Reader r{c.family_json, source, ""};
  configure_common(r, c, "rms_norm_eps");
  c.ssm_layer = MixerKind::mamba1;
  for (const char* key : {"attn_layer_period", "expert_layer_period"})
    if (r.integer(key, 1) <= 0) throw_error(ErrorCode::parse, r.where(key), " must be positive");
  for (auto [key, period] : {std::pair<const char*, const char*>{"attn_layer_offset", "attn_layer_period"},
                             {"expert_layer_offset", "expert_layer_period"}}) {
    const int64_t off = r.integer(key, 0), p = r.integer(period, 1);
    if (off < 0 || off >= p)
      throw_error(ErrorCode::parse, r.where(key), " expected 0..", p - 1, " (below ", period, "), found ",
                  off);
  }
  const int64_t heads = r.integer("num_attention_heads", 0), kv = r.integer("num_key_value_heads", heads);
  const int64_t E = r.integer("num_experts", 16), k = r.integer("num_experts_per_tok", 2);
  if (E <= 0) throw_error(ErrorCode::parse, r.where("num_experts"), " must be positive, found ", E);
  if (E > 1 && (k <= 0 || k > E))
    throw_error(ErrorCode::parse, r.where("num_experts_per_tok"), " expected 1..", E, ", found ", k);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    if (is_attention(r, i)) {
      c.attn_layer_idx.push_back(i);
      if (heads <= 0 || kv <= 0 || heads % kv != 0 || c.d_model % heads != 0)
        throw_error(ErrorCode::shape, r.where("num_key_value_heads"), " ", kv,
                    " must divide num_attention_heads ", heads, ", which must divide hidden_size");
    }
    c.layer_names.push_back(std::string(is_attention(r, i) ? "Attn" : "Mamba1") +
                            (is_expert(r, i) ? "+MoE" : ""));
  }
  // The Mamba-1 mixer reads its section (SPEC §1.1 names) and d_model.
  Mamba1Config& m = c.section<Mamba1Config>();
  m.d_state = r.integer("mamba_d_state", 16);
  m.d_conv = r.integer("mamba_d_conv", 4);
  m.expand = r.number("mamba_expand", 2);
  m.dt_rank =
      r.has("mamba_dt_rank") && r.j.at("mamba_dt_rank").is_string() ? 0 : r.integer("mamba_dt_rank", 0);
  m.conv_bias = r.boolean("mamba_conv_bias", true);
  m.bias = r.boolean("mamba_proj_bias", false);
  m.bcdt_norm = Mamba1Config::BcdtNorm::learned;
  m.bcdt_norm_eps = c.norm_eps;
  m.d_inner = checked_to_int64(m.expand * static_cast<double>(c.d_model), 0, int64_t{1} << 22,
                               r.where("mamba_expand") + " * hidden_size");
  if (m.dt_rank == 0) m.dt_rank = (c.d_model + 15) / 16;
  for (auto [key, v] : {std::pair<const char*, int64_t>{"mamba_d_state", m.d_state},
                        {"mamba_d_conv", m.d_conv},
                        {"mamba_dt_rank", m.dt_rank},
                        {"mamba_expand", m.d_inner}})
    if (v <= 0) throw_error(ErrorCode::parse, r.where(key), " must be positive, found ", v);
}

void build_block(const ModelConfig& c, int64_t layer, Block& b, BuildContext&) {
  const io::Reader r{c.family_json, "config.json", ""};
  b.norm_name = "input_layernorm";
  b.norm2_name = "pre_ff_layernorm";
  if (is_attention(r, layer)) {
    AttentionSpec a;
    a.d_in = a.d_out = c.d_model;
    a.n_heads = r.integer("num_attention_heads", 0);
    a.n_kv_heads = r.integer("num_key_value_heads", a.n_heads);
    a.head_dim = c.d_model / a.n_heads;
    b.mixer = make_attention_hf(a);
  } else {
    b.mixer = make_mixer(MixerKind::mamba1, c, layer);
    b.mixer_prefix = "mamba.";
  }
  const int64_t I = r.integer("intermediate_size", 0);
  if (is_expert(r, layer)) {
    MoeSpec m;
    m.d_model = c.d_model;
    m.n_experts = r.integer("num_experts", 16);
    m.hidden = I;
    m.router.kind = ops::MoeRouter::softmax_topk;
    m.router.top_k = r.integer("num_experts_per_tok", 2);
    m.act = ops::MoeActivation::swiglu;
    m.router_weight = "feed_forward.router.weight";
    m.expert_gate = "feed_forward.experts.{e}.gate_proj.weight";
    m.expert_up = "feed_forward.experts.{e}.up_proj.weight";
    m.expert_down = "feed_forward.experts.{e}.down_proj.weight";
    b.ffn = make_moe(m);
  } else {
    MlpSpec m;
    m.d_model = c.d_model;
    m.hidden = I;
    m.gate = "feed_forward.gate_proj.weight";
    m.up = "feed_forward.up_proj.weight";
    m.down = "feed_forward.down_proj.weight";
    b.ffn = make_mlp(m);
  }
}

}  // namespace

extern const Family kJamba{"jamba", configure, build_block};

}  // namespace mamba::models
