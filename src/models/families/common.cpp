// What the family files share: the common HF config fields, the hybrids' Mamba-2 and RoPE keys,
// layer-kind checks, and the family registry.
#include <algorithm>
#include <cmath>
#include <tuple>

#include "core/checked.h"
#include "core/error.h"
#include "models/architectures.h"
#include "models/families/family.h"
#include "models/mamba2.h"

namespace mamba::models {

// One line per family (its file defines it).
extern const Family kBamba, kNemotronH, kGraniteMoeHybrid, kJamba, kZamba2, kFalconH1;

const Family& find_family(const std::string& model_type, const std::string& source) {
  static const Family* const kFamilies[] = {&kBamba, &kNemotronH, &kGraniteMoeHybrid,
                                            &kJamba, &kZamba2,    &kFalconH1};
  std::string known = "mamba, mamba2, falcon_mamba";
  for (const Family* f : kFamilies) {
    if (model_type == f->model_type) return *f;
    known += std::string(", ") + f->model_type;
  }
  throw_error(ErrorCode::unsupported, source, ": field 'model_type' expected one of ", known, ", found '",
              model_type, "'");
}

void configure_common(const io::Reader& r, ModelConfig& c, const char* eps_key, int64_t default_layers) {
  c.format = io::CheckpointFormat::hf;
  c.d_model = r.integer("hidden_size", 0);
  c.n_layer = r.integer("num_hidden_layers", default_layers);
  c.vocab_size = r.integer("vocab_size", 0);
  // Bounds far above any real model, so that no product of dimensions can overflow (2^20 · 2^20 ·
  // 2^20 < 2^63) and a hostile config fails here rather than in an allocation.
  for (auto [key, v, max] :
       {std::tuple<const char*, int64_t, int64_t>{"hidden_size", c.d_model, int64_t(1) << 20},
        {"num_hidden_layers", c.n_layer, int64_t(1) << 16},
        {"vocab_size", c.vocab_size, int64_t(1) << 28}})
    if (v <= 0 || v > max)
      throw_error(ErrorCode::parse, r.where(key), " expected an integer in [1, ", max, "], found ", v);
  auto size_like = [](const std::string& key) {
    if (key == "vocab_size" || key.find("token_id") != std::string::npos ||
        key.find("theta") != std::string::npos)
      return false;
    for (const char* part : {"size", "dim", "head", "layer", "expert", "rank", "group", "state", "conv",
                             "block", "intermediate", "channels"})
      if (key.find(part) != std::string::npos) return true;
    return false;
  };
  for (auto it = r.j.begin(); it != r.j.end(); ++it)  // every other dimension: at most 2^20
    if (it.value().is_number_integer() && size_like(it.key())) {
      const int64_t v = it.value().get<int64_t>();
      if (v < -1 || v > (int64_t(1) << 20))
        throw_error(ErrorCode::parse, r.where(it.key()), " expected an integer in [-1, 2^20], found ", v);
    }
  c.pad_vocab_size_multiple = 1;
  c.vocab_padded = c.vocab_size;
  c.tie_embeddings = r.boolean("tie_word_embeddings", true);
  c.embedding_pad_id = r.integer("pad_token_id", -1);  // HF builds nn.Embedding(..., padding_idx)
  c.norm_eps = r.number(eps_key, 1e-5);
  c.rms_norm = true;
  c.d_intermediate = 0;
  c.embedding_tensor = "model.embed_tokens.weight";
  c.layer_prefix = "model.layers.";
  c.final_norm_tensor = "model.final_layernorm.weight";
  c.lm_head_tensor = "lm_head.weight";
  c.ssm_layer = MixerKind::mamba2;
  c.attn_layer_idx.clear();
  c.layer_names.clear();
}

void read_time_step_limit(const io::Reader& r, Mamba2Spec& s) {
  if (!r.has("time_step_limit")) return;
  const nlohmann::json& v = r.j.at("time_step_limit");
  if (!v.is_array() || v.size() != 2) r.type_error("time_step_limit", "a pair [lo, hi]", v);
  s.dt_limit_lo = r.to_number("time_step_limit", v[0]);
  s.dt_limit_hi = r.to_number("time_step_limit", v[1]);
}

Mamba2Spec read_mamba_keys(const io::Reader& r, const ModelConfig& c) {
  Mamba2Spec s;
  s.d_model = c.d_model;
  s.n_heads = r.integer("mamba_n_heads", 128);
  if (s.n_heads <= 0)
    throw_error(ErrorCode::parse, r.where("mamba_n_heads"), " must be positive, found ", s.n_heads);
  const int64_t d_inner = checked_to_int64(r.number("mamba_expand", 2) * static_cast<double>(c.d_model), 0,
                                           int64_t{1} << 22, r.where("mamba_expand") + " * hidden_size");
  s.head_dim = r.has("mamba_d_head") && r.j.at("mamba_d_head").is_string() ? d_inner / s.n_heads
                                                                           : r.integer("mamba_d_head", 0);
  if (s.head_dim * s.n_heads != d_inner)
    throw_error(ErrorCode::shape, r.source, ": inconsistent dimensions: mamba_n_heads ", s.n_heads,
                " x mamba_d_head ", s.head_dim, " != mamba_expand x hidden_size ", d_inner);
  s.n_groups = r.integer("mamba_n_groups", 1);
  s.d_state = r.integer("mamba_d_state", 256);
  s.d_conv = r.integer("mamba_d_conv", 4);
  s.chunk_size = r.integer("mamba_chunk_size", 256);
  s.conv_bias = r.boolean("mamba_conv_bias", true);
  s.proj_bias = r.boolean("mamba_proj_bias", false);
  s.norm_eps = c.norm_eps;
  read_time_step_limit(r, s);
  return s;
}

std::unique_ptr<Mixer> make_hf_mamba2(const Mamba2Spec& s, const std::string& source) {
  auto positive = [&](const char* what, int64_t v) {
    if (v <= 0) throw_error(ErrorCode::parse, source, ": Mamba-2 ", what, " must be positive, found ", v);
  };
  positive("heads", s.n_heads);
  positive("head_dim", s.head_dim);
  positive("n_groups", s.n_groups);
  positive("d_state", s.d_state);
  positive("d_conv", s.d_conv);
  positive("chunk_size", s.chunk_size);
  if (s.n_heads % s.n_groups != 0)
    throw_error(ErrorCode::shape, source, ": inconsistent dimensions: Mamba-2 heads ", s.n_heads,
                " is not divisible by n_groups ", s.n_groups);
  ModelConfig c;
  c.d_model = s.d_model;
  Mamba2Config& m = c.section<Mamba2Config>();
  m.d_state = s.d_state;
  m.d_conv = s.d_conv;
  m.head_dim = s.head_dim;
  m.n_groups = s.n_groups;
  m.chunk_size = s.chunk_size;
  m.conv_bias = s.conv_bias;
  m.bias = s.proj_bias;
  m.rmsnorm = s.rmsnorm;
  m.norm_before_gate = s.norm_before_gate;
  m.norm_eps = s.norm_eps;
  m.dt_limit_lo = s.dt_limit_lo;
  m.dt_limit_hi = s.dt_limit_hi;
  m.n_heads = s.n_heads;
  m.d_inner = m.d_ssm = s.n_heads * s.head_dim;
  m.expand = static_cast<double>(m.d_inner) / static_cast<double>(s.d_model);
  m.norm_n_groups = s.n_groups;  // grouped gated norm (mamba_ssm semantics)
  m.d_mlp = 0;
  m.conv_dim = m.d_ssm + 2 * m.n_groups * m.d_state;
  m.d_in_proj = 2 * m.d_inner + 2 * m.n_groups * m.d_state + m.n_heads;
  return make_mixer(MixerKind::mamba2, c, 0);
}

void read_rope(const io::Reader& r, AttentionSpec& s) {
  const io::Reader rp = r.child("rope_parameters");
  s.rope_theta = rp.has("rope_theta") ? rp.number("rope_theta", 10000.0) : r.number("rope_theta", 10000.0);
  const std::string type = rp.string("rope_type", "default");
  if (type != "default")
    throw_error(ErrorCode::unsupported, rp.where("rope_type"), " expected default, found '", type, "'");
  const double frac = rp.has("partial_rotary_factor") ? rp.number("partial_rotary_factor", 1.0)
                                                      : r.number("partial_rotary_factor", 1.0);
  if (!(frac > 0.0 && frac <= 1.0))
    throw_error(ErrorCode::parse, r.where("partial_rotary_factor"), " expected a value in (0, 1], found ",
                frac);
  s.rotary_dim = static_cast<int64_t>(static_cast<double>(s.head_dim) * frac);
  if (s.rotary_dim % 2 != 0)
    throw_error(ErrorCode::shape, r.source, ": inconsistent dimensions: rotary dims ", s.rotary_dim,
                " (head_dim x partial_rotary_factor) must be even");
}

void check_layer_kinds(const std::vector<std::string>& kinds, const std::vector<std::string>& allowed,
                       int64_t n_layer, const std::string& source, const char* key) {
  if (static_cast<int64_t>(kinds.size()) != n_layer)
    throw_error(ErrorCode::shape, source, ": field '", key, "' has ", kinds.size(),
                " entries, expected num_hidden_layers = ", n_layer);
  for (size_t i = 0; i < kinds.size(); ++i)
    if (std::find(allowed.begin(), allowed.end(), kinds[i]) == allowed.end()) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw_error(ErrorCode::unsupported, source, ": field '", key, "[", i, "]' expected one of ", list,
                  ", found '", kinds[i], "'");
    }
}

}  // namespace mamba::models
