// config.json parsing for both checkpoint families (see model_config.h).
#include "io/model_config.h"

#include <cmath>
#include <limits>
#include <utility>

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"
#include "io/config_reader.h"

namespace mamba::io {

using nlohmann::json;

namespace {

// Python's json.dump writes bare Infinity / -Infinity / NaN, which JSON forbids: quote them
// (outside strings) so the parser accepts the file; number readers below convert them back.
std::string quote_nonfinite(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size())
        out += text[++i];
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(word);
      if (text.compare(i, n, word) == 0) {
        out += '"' + std::string(word) + '"';
        i += n - 1;
        goto next;
      }
    }
    out += c;
  next:;
  }
  return out;
}

void require_positive(const std::string& source, const char* name, int64_t v) {
  if (v <= 0) throw_error(ErrorCode::parse, source, ": ", name, " must be positive, found ", v);
}

// Upper bounds far above any real model, checked before anything derived from them is computed or
// allocated: products of a few of them stay far below 2^63, and a hostile config (2^31 layers,
// expand = 1e308) fails here with the field's name instead of overflowing or exhausting memory.
constexpr int64_t kMaxDim = int64_t{1} << 20, kMaxLayers = int64_t{1} << 16, kMaxVocab = int64_t{1} << 28;

void require_at_most(const std::string& source, const char* name, int64_t v, int64_t max) {
  if (v > max) throw_error(ErrorCode::parse, source, ": ", name, " is ", v, ", above the limit of ", max);
}

// expand · d_model as an integer width (d_inner), refusing NaN, infinities and absurd sizes.
int64_t expanded(double expand, int64_t d_model, const std::string& source) {
  return checked_to_int64(expand * static_cast<double>(d_model), std::numeric_limits<int64_t>::min() / 2,
                          kMaxDim * 4, source + ": expand * d_model");
}

[[noreturn]] void inconsistent(const std::string& source, const std::string& what) {
  throw_error(ErrorCode::shape, source, ": inconsistent dimensions: ", what);
}

void parse_mamba1(const Reader& r, Mamba1Config& m) {
  m.d_state = r.integer("d_state", m.d_state);
  m.d_conv = r.integer("d_conv", m.d_conv);
  m.expand = r.number("expand", m.expand);
  if (r.has("dt_rank") && r.j.at("dt_rank").is_string()) {
    if (r.string("dt_rank", "auto") != "auto")
      r.type_error("dt_rank", "an integer or \"auto\"", r.j.at("dt_rank"));
  } else {
    m.dt_rank = r.integer("dt_rank", 0);
  }
  m.conv_bias = r.boolean("conv_bias", m.conv_bias);
  m.bias = r.boolean("bias", m.bias);
  m.dt_min = r.number("dt_min", m.dt_min);
  m.dt_max = r.number("dt_max", m.dt_max);
  m.dt_init_floor = r.number("dt_init_floor", m.dt_init_floor);
  m.dt_scale = r.number("dt_scale", m.dt_scale);
  m.dt_init = r.string("dt_init", m.dt_init);
}

void parse_mamba2(const Reader& r, Mamba2Config& m) {
  m.d_state = r.integer("d_state", m.d_state);
  m.d_conv = r.integer("d_conv", m.d_conv);
  m.expand = r.number("expand", m.expand);
  m.head_dim = r.integer("headdim", m.head_dim);
  m.d_ssm = r.integer("d_ssm", m.d_ssm);
  m.n_groups = r.integer("ngroups", m.n_groups);
  m.chunk_size = r.integer("chunk_size", m.chunk_size);
  m.D_has_hdim = r.boolean("D_has_hdim", m.D_has_hdim);
  m.rmsnorm = r.boolean("rmsnorm", m.rmsnorm);
  m.norm_before_gate = r.boolean("norm_before_gate", m.norm_before_gate);
  m.bias = r.boolean("bias", m.bias);
  m.conv_bias = r.boolean("conv_bias", m.conv_bias);
  if (r.has("dt_limit")) {
    const json& v = r.j.at("dt_limit");
    if (!v.is_array() || v.size() != 2) r.type_error("dt_limit", "a pair [lo, hi]", v);
    m.dt_limit_lo = r.to_number("dt_limit", v[0]);
    m.dt_limit_hi = r.to_number("dt_limit", v[1]);
  }
  m.dt_min = r.number("dt_min", m.dt_min);
  m.dt_max = r.number("dt_max", m.dt_max);
  m.dt_init_floor = r.number("dt_init_floor", m.dt_init_floor);
  if (r.has("A_init_range")) {
    const json& v = r.j.at("A_init_range");
    if (!v.is_array() || v.size() != 2) r.type_error("A_init_range", "a pair [lo, hi]", v);
    m.A_init_lo = r.to_number("A_init_range", v[0]);
    m.A_init_hi = r.to_number("A_init_range", v[1]);
  }
}

void parse_mamba3(const Reader& r, Mamba3Config& m) {
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

void parse_attention(const Reader& r, AttentionConfig& a) {
  a.num_heads = r.integer("num_heads", a.num_heads);
  a.num_heads_kv = r.integer("num_heads_kv", a.num_heads);
  a.head_dim = r.integer("head_dim", 0);
  a.mlp_dim = r.integer("mlp_dim", 0);
  a.qkv_proj_bias = r.boolean("qkv_proj_bias", a.qkv_proj_bias);
  a.out_proj_bias = r.boolean("out_proj_bias", a.out_proj_bias);
  a.softmax_scale = r.number("softmax_scale", 0.0);
  a.causal = r.boolean("causal", a.causal);
  a.d_conv = r.integer("d_conv", 0);
  a.rotary_emb_dim = r.integer("rotary_emb_dim", 0);
  a.rotary_emb_base = r.number("rotary_emb_base", a.rotary_emb_base);
  a.rotary_emb_interleaved = r.boolean("rotary_emb_interleaved", a.rotary_emb_interleaved);
}

ModelConfig parse_mamba_ssm(const Reader& r) {
  ModelConfig c;
  c.format = CheckpointFormat::mamba_ssm;
  c.d_model = r.integer("d_model", c.d_model);
  c.d_intermediate = r.integer("d_intermediate", c.d_intermediate);
  c.n_layer = r.integer("n_layer", c.n_layer);
  c.vocab_size = r.integer("vocab_size", c.vocab_size);
  c.rms_norm = r.boolean("rms_norm", c.rms_norm);
  c.residual_in_fp32 = r.boolean("residual_in_fp32", c.residual_in_fp32);
  r.boolean("fused_add_norm", true);  // kernel switch: same math
  c.pad_vocab_size_multiple = r.integer("pad_vocab_size_multiple", c.pad_vocab_size_multiple);
  c.tie_embeddings = r.boolean("tie_embeddings", c.tie_embeddings);
  if (r.has("attn_layer_idx")) {
    const json& v = r.j.at("attn_layer_idx");
    if (!v.is_array()) r.type_error("attn_layer_idx", "a list of layer indices", v);
    for (const json& e : v) {
      if (!e.is_number_integer()) r.type_error("attn_layer_idx", "integer layer indices", e);
      c.attn_layer_idx.push_back(e.get<int64_t>());
    }
  }
  const Reader ssm = r.child("ssm_cfg");
  const std::string layer = ssm.string("layer", "Mamba1");
  if (layer == "Mamba1")
    c.ssm_layer = MixerKind::mamba1;
  else if (layer == "Mamba2")
    c.ssm_layer = MixerKind::mamba2;
  else if (layer == "Mamba3")
    c.ssm_layer = MixerKind::mamba3;
  else
    throw_error(ErrorCode::unsupported, r.source,
                ": field 'ssm_cfg.layer' expected Mamba1, Mamba2 or Mamba3, found '", layer, "'");
  if (c.ssm_layer == MixerKind::mamba1) parse_mamba1(ssm, c.mamba1);
  if (c.ssm_layer == MixerKind::mamba2) parse_mamba2(ssm, c.mamba2);
  if (c.ssm_layer == MixerKind::mamba3) parse_mamba3(ssm, c.mamba3);
  parse_attention(r.child("attn_cfg"), c.attn);
  return c;
}

ModelConfig parse_hf(const Reader& r, const std::string& model_type) {
  ModelConfig c;
  c.format = CheckpointFormat::hf;
  c.d_model = r.integer("hidden_size", 768);
  c.n_layer = r.integer("num_hidden_layers", 32);
  c.vocab_size = r.integer("vocab_size", 50280);
  c.pad_vocab_size_multiple = 1;  // HF stores the embedding at its real size
  c.tie_embeddings = r.boolean("tie_word_embeddings", true);
  c.norm_eps = r.number("layer_norm_epsilon", 1e-5);
  c.residual_in_fp32 = r.boolean("residual_in_fp32", true);
  const double expand = r.number("expand", 2);
  if (model_type == "mamba" || model_type == "falcon_mamba") {
    c.ssm_layer = MixerKind::mamba1;
    Mamba1Config& m = c.mamba1;
    m.d_state = r.integer("state_size", 16);
    m.d_conv = r.integer("conv_kernel", 4);
    m.expand = expand;
    if (r.has("time_step_rank") && r.j.at("time_step_rank").is_string())
      m.dt_rank = 0;
    else
      m.dt_rank = r.integer("time_step_rank", 0);
    m.conv_bias = r.boolean("use_conv_bias", true);
    m.bias = r.boolean("use_bias", false);
    if (model_type == "falcon_mamba") {
      m.bcdt_norm = Mamba1Config::BcdtNorm::weightless;
      m.bcdt_norm_eps = r.number("mixer_rms_eps", 1e-6);
    }
    const int64_t inner = expanded(expand, c.d_model, r.source);
    const int64_t inter = r.integer("intermediate_size", inner);
    if (inter != inner)
      inconsistent(r.source, "intermediate_size " + std::to_string(inter) + " != expand * hidden_size");
  } else {
    c.ssm_layer = MixerKind::mamba2;
    Mamba2Config& m = c.mamba2;
    m.d_state = r.integer("state_size", 128);
    m.d_conv = r.integer("conv_kernel", 4);
    m.expand = expand;
    m.head_dim = r.integer("head_dim", 64);
    m.n_groups = r.integer("n_groups", 1);
    m.chunk_size = r.integer("chunk_size", 256);
    m.conv_bias = r.boolean("use_conv_bias", true);
    m.bias = r.boolean("use_bias", false);
    m.rmsnorm = r.boolean("rms_norm", true);
    m.norm_eps = c.norm_eps;
    // The gated RMSNorm is per group (d_ssm / n_groups), as mamba_ssm, llama.cpp and the checkpoints'
    // own training compute it; transformers <= 5.17 normalizes the whole row (a bug there, issue 11).
    m.norm_n_groups = m.n_groups;
    if (r.has("time_step_limit")) {
      const json& v = r.j.at("time_step_limit");
      if (!v.is_array() || v.size() != 2) r.type_error("time_step_limit", "a pair [lo, hi]", v);
      m.dt_limit_lo = r.to_number("time_step_limit", v[0]);
      m.dt_limit_hi = r.to_number("time_step_limit", v[1]);
    }
    const int64_t heads = r.integer("num_heads", 0);
    const int64_t inner = expanded(expand, c.d_model, r.source);
    require_at_most(r.source, "num_heads", heads, kMaxDim);
    require_at_most(r.source, "head_dim", m.head_dim, kMaxDim);
    if (heads > 0 && m.head_dim >= 0 && heads * m.head_dim != inner)
      inconsistent(r.source, "num_heads " + std::to_string(heads) + " * head_dim " +
                                 std::to_string(m.head_dim) + " != expand * hidden_size " +
                                 std::to_string(inner));
  }
  return c;
}

}  // namespace

const char* mixer_kind_name(MixerKind kind) {
  switch (kind) {
    case MixerKind::mamba1:
      return "Mamba1";
    case MixerKind::mamba2:
      return "Mamba2";
    case MixerKind::mamba3:
      return "Mamba3";
    case MixerKind::attention:
      return "MHA";
    case MixerKind::mlp:
      return "MLP";
    case MixerKind::moe:
      return "MoE";
  }
  return "?";
}

MixerKind ModelConfig::layer_kind(int64_t layer) const {
  for (int64_t i : attn_layer_idx)
    if (i == layer) return MixerKind::attention;
  return ssm_layer;
}

std::string ModelConfig::embedding_name() const {
  if (!embedding_tensor.empty()) return embedding_tensor;
  return format == CheckpointFormat::hf ? "backbone.embeddings.weight" : "backbone.embedding.weight";
}

void finalize_model_config(ModelConfig& c, const std::string& src) {
  require_positive(src, "d_model", c.d_model);
  require_positive(src, "n_layer", c.n_layer);
  require_positive(src, "vocab_size", c.vocab_size);
  require_positive(src, "pad_vocab_size_multiple", c.pad_vocab_size_multiple);
  require_at_most(src, "d_model", c.d_model, kMaxDim);
  require_at_most(src, "n_layer", c.n_layer, kMaxLayers);
  require_at_most(src, "vocab_size", c.vocab_size, kMaxVocab);
  require_at_most(src, "pad_vocab_size_multiple", c.pad_vocab_size_multiple, kMaxDim);
  require_at_most(src, "d_intermediate", c.d_intermediate, kMaxDim * 16);
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"ssm_cfg.d_state", c.mamba1.d_state},
                                {"ssm_cfg.d_conv", c.mamba1.d_conv},
                                {"ssm_cfg.dt_rank", c.mamba1.dt_rank},
                                {"ssm_cfg.d_state", c.mamba2.d_state},
                                {"ssm_cfg.d_conv", c.mamba2.d_conv},
                                {"ssm_cfg.headdim", c.mamba2.head_dim},
                                {"ssm_cfg.d_ssm", c.mamba2.d_ssm},
                                {"ssm_cfg.ngroups", c.mamba2.n_groups},
                                {"ssm_cfg.chunk_size", c.mamba2.chunk_size},
                                {"ssm_cfg.d_state", c.mamba3.d_state},
                                {"ssm_cfg.headdim", c.mamba3.head_dim},
                                {"ssm_cfg.ngroups", c.mamba3.n_groups},
                                {"ssm_cfg.mimo_rank", c.mamba3.mimo_rank},
                                {"ssm_cfg.chunk_size", c.mamba3.chunk_size},
                                {"attn_cfg.num_heads", c.attn.num_heads},
                                {"attn_cfg.num_heads_kv", c.attn.num_heads_kv},
                                {"attn_cfg.head_dim", c.attn.head_dim},
                                {"attn_cfg.mlp_dim", c.attn.mlp_dim},
                                {"attn_cfg.d_conv", c.attn.d_conv},
                                {"attn_cfg.rotary_emb_dim", c.attn.rotary_emb_dim}})
    require_at_most(src, name, v, kMaxDim);
  if (c.attn.mlp_dim < 0 || c.attn.head_dim < 0 || c.attn.d_conv < 0 || c.attn.rotary_emb_dim < 0)
    throw_error(ErrorCode::parse, src, ": attn_cfg sizes must not be negative");
  if (c.mamba1.dt_rank < 0) throw_error(ErrorCode::parse, src, ": ssm_cfg.dt_rank must not be negative");
  const int64_t m = c.pad_vocab_size_multiple;
  c.vocab_padded = (c.vocab_size + m - 1) / m * m;
  c.mlp_hidden = c.d_intermediate > 0 ? (c.d_intermediate + 127) / 128 * 128 : 0;
  for (int64_t i : c.attn_layer_idx)
    if (i < 0 || i >= c.n_layer)
      throw_error(ErrorCode::parse, src, ": attn_layer_idx entry ", i, " is outside [0, n_layer=", c.n_layer,
                  ")");
  const bool has_ssm = static_cast<int64_t>(c.attn_layer_idx.size()) < c.n_layer;
  if (has_ssm && c.ssm_layer == MixerKind::mamba1) {
    Mamba1Config& m1 = c.mamba1;
    m1.d_inner = expanded(m1.expand, c.d_model, src);
    if (m1.dt_rank == 0) m1.dt_rank = (c.d_model + 15) / 16;
    require_positive(src, "d_state", m1.d_state);
    require_positive(src, "d_conv", m1.d_conv);
    require_positive(src, "d_inner", m1.d_inner);
  }
  if (has_ssm && c.ssm_layer == MixerKind::mamba2) {
    Mamba2Config& m2 = c.mamba2;
    m2.d_inner = expanded(m2.expand, c.d_model, src);
    if (m2.d_ssm < 0) m2.d_ssm = m2.d_inner;
    require_positive(src, "d_state", m2.d_state);
    require_positive(src, "headdim", m2.head_dim);
    require_positive(src, "ngroups", m2.n_groups);
    require_positive(src, "d_conv", m2.d_conv);
    require_positive(src, "chunk_size", m2.chunk_size);
    if (m2.d_ssm % m2.head_dim != 0)
      inconsistent(src, "d_ssm " + std::to_string(m2.d_ssm) + " is not divisible by headdim " +
                            std::to_string(m2.head_dim));
    m2.n_heads = m2.d_ssm / m2.head_dim;
    if (m2.n_heads % m2.n_groups != 0)
      inconsistent(src, "n_heads " + std::to_string(m2.n_heads) + " is not divisible by ngroups " +
                            std::to_string(m2.n_groups));
    if (m2.d_ssm > m2.d_inner) inconsistent(src, "d_ssm is larger than d_inner");
    if (m2.norm_n_groups <= 0) m2.norm_n_groups = m2.n_groups;
    m2.d_mlp = m2.d_inner - m2.d_ssm;
    m2.conv_dim = m2.d_ssm + 2 * m2.n_groups * m2.d_state;
    m2.d_in_proj = 2 * m2.d_inner + 2 * m2.n_groups * m2.d_state + m2.n_heads;
  }
  if (has_ssm && c.ssm_layer == MixerKind::mamba3) {
    Mamba3Config& m3 = c.mamba3;
    m3.d_inner = expanded(m3.expand, c.d_model, src);
    require_positive(src, "d_state", m3.d_state);
    require_positive(src, "headdim", m3.head_dim);
    require_positive(src, "ngroups", m3.n_groups);
    require_positive(src, "chunk_size", m3.chunk_size);
    if (m3.d_inner % m3.head_dim != 0)
      inconsistent(src, "d_inner " + std::to_string(m3.d_inner) + " is not divisible by headdim " +
                            std::to_string(m3.head_dim));
    m3.n_heads = m3.d_inner / m3.head_dim;
    if (m3.n_heads % m3.n_groups != 0)
      inconsistent(src, "n_heads " + std::to_string(m3.n_heads) + " is not divisible by ngroups " +
                            std::to_string(m3.n_groups));
    if (m3.rope_fraction != 0.5 && m3.rope_fraction != 1.0)
      throw_error(ErrorCode::unsupported, src, ": field 'ssm_cfg.rope_fraction' expected 0.5 or 1.0, found ",
                  m3.rope_fraction);
    m3.rank = m3.is_mimo ? m3.mimo_rank : 1;
    require_positive(src, "mimo_rank", m3.rank);
    int64_t split = static_cast<int64_t>(static_cast<double>(m3.d_state) * m3.rope_fraction);
    if (split % 2 != 0) split -= 1;
    m3.n_rope_angles = split / 2;
    if (m3.n_rope_angles <= 0)
      inconsistent(src, "d_state " + std::to_string(m3.d_state) + " leaves no rotary angles");
    if (m3.is_mimo && 2 * m3.n_rope_angles > m3.d_state)
      inconsistent(src, "MIMO rotation needs n_rope_angles <= d_state / 2");
    m3.d_in_proj =
        2 * m3.d_inner + 2 * m3.d_state * m3.n_groups * m3.rank + 3 * m3.n_heads + m3.n_rope_angles;
  }
  if (!c.attn_layer_idx.empty()) {
    AttentionConfig& a = c.attn;
    require_positive(src, "attn_cfg.num_heads", a.num_heads);
    if (a.num_heads_kv <= 0) a.num_heads_kv = a.num_heads;
    if (a.num_heads % a.num_heads_kv != 0)
      inconsistent(src, "attn_cfg.num_heads " + std::to_string(a.num_heads) +
                            " is not divisible by num_heads_kv " + std::to_string(a.num_heads_kv));
    if (a.head_dim == 0) {
      if (c.d_model % a.num_heads != 0) inconsistent(src, "d_model is not divisible by attn_cfg.num_heads");
      a.head_dim = c.d_model / a.num_heads;
    }
    a.mlp_dim = (a.mlp_dim + 255) / 256 * 256;
    a.qkv_dim = a.head_dim * (a.num_heads + 2 * a.num_heads_kv);
    a.out_dim = a.head_dim * a.num_heads;
    if (a.rotary_emb_dim % 2 != 0 || a.rotary_emb_dim > a.head_dim)
      inconsistent(src, "attn_cfg.rotary_emb_dim must be even and <= head_dim");
    if (!a.causal)
      throw_error(ErrorCode::unsupported, src,
                  ": field 'attn_cfg.causal' is false: a language model needs causal "
                  "attention (set \"causal\": true)");
    if (a.softmax_scale == 0.0) a.softmax_scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
  }
}

ModelConfig parse_model_config(const json& j, const std::string& source) {
  if (!j.is_object())
    throw_error(ErrorCode::parse, source, ": expected a JSON object, found ", j.type_name());
  const Reader r{j, source, ""};
  ModelConfig c;
  if (j.contains("model_type")) {
    const std::string type = r.string("model_type", "");
    if (type != "mamba" && type != "mamba2" && type != "falcon_mamba") {
      // A hybrid family: models/families/ validates it (Model::load) and fills the shared fields.
      c.format = CheckpointFormat::hf;
      c.family = type;
      c.family_json = j;
      return c;
    }
    c = parse_hf(r, type);
  } else {
    c = parse_mamba_ssm(r);
  }
  finalize_model_config(c, source);
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  const std::string path = path_join(model_dir, "config.json");
  const std::string text = read_file(path);
  check_json_depth(text, path);
  json j;
  try {
    j = json::parse(quote_nonfinite(text));
  } catch (const json::exception& e) {
    throw_error(ErrorCode::parse, path, ": not valid JSON (", e.what(), ")");
  }
  return parse_model_config(j, path);
}

json to_mamba_ssm_json(const ModelConfig& c) {
  json ssm;
  switch (c.ssm_layer) {
    case MixerKind::mamba1: {
      const Mamba1Config& m = c.mamba1;
      ssm = {{"layer", "Mamba1"},    {"d_state", m.d_state},     {"d_conv", m.d_conv}, {"expand", m.expand},
             {"dt_rank", m.dt_rank}, {"conv_bias", m.conv_bias}, {"bias", m.bias}};
      break;
    }
    case MixerKind::mamba2: {
      const Mamba2Config& m = c.mamba2;
      ssm = {{"layer", "Mamba2"},
             {"d_state", m.d_state},
             {"d_conv", m.d_conv},
             {"expand", m.expand},
             {"headdim", m.head_dim},
             {"ngroups", m.n_groups},
             {"chunk_size", m.chunk_size},
             {"D_has_hdim", m.D_has_hdim},
             {"rmsnorm", m.rmsnorm},
             {"norm_before_gate", m.norm_before_gate},
             {"bias", m.bias},
             {"conv_bias", m.conv_bias}};
      if (m.d_ssm != m.d_inner) ssm["d_ssm"] = m.d_ssm;
      if (m.dt_limit_lo != 0.0 || std::isfinite(m.dt_limit_hi))
        ssm["dt_limit"] = {m.dt_limit_lo,
                           std::isfinite(m.dt_limit_hi) ? json(m.dt_limit_hi) : json("Infinity")};
      break;
    }
    case MixerKind::mamba3: {
      const Mamba3Config& m = c.mamba3;
      ssm = {{"layer", "Mamba3"},         {"d_state", m.d_state},
             {"expand", m.expand},        {"headdim", m.head_dim},
             {"ngroups", m.n_groups},     {"rope_fraction", m.rope_fraction},
             {"A_floor", m.A_floor},      {"is_outproj_norm", m.is_outproj_norm},
             {"is_mimo", m.is_mimo},      {"mimo_rank", m.mimo_rank},
             {"chunk_size", m.chunk_size}};
      if (m.rope_mode != RopeMode::data_dependent)
        ssm["rope_mode"] = m.rope_mode == RopeMode::none ? "none" : "data_independent";
      break;
    }
    case MixerKind::attention:
    case MixerKind::mlp:
    case MixerKind::moe:
      break;
  }
  json j = {{"d_model", c.d_model},
            {"d_intermediate", c.d_intermediate},
            {"n_layer", c.n_layer},
            {"vocab_size", c.vocab_size},
            {"ssm_cfg", ssm},
            {"attn_layer_idx", c.attn_layer_idx},
            {"rms_norm", c.rms_norm},
            {"residual_in_fp32", c.residual_in_fp32},
            {"fused_add_norm", true},
            {"pad_vocab_size_multiple", c.pad_vocab_size_multiple},
            {"tie_embeddings", c.tie_embeddings}};
  if (!c.attn_layer_idx.empty()) {
    const AttentionConfig& a = c.attn;
    j["attn_cfg"] = {{"num_heads", a.num_heads},
                     {"num_heads_kv", a.num_heads_kv},
                     {"head_dim", a.head_dim},
                     {"mlp_dim", a.mlp_dim},
                     {"qkv_proj_bias", a.qkv_proj_bias},
                     {"out_proj_bias", a.out_proj_bias},
                     {"causal", a.causal},
                     {"d_conv", a.d_conv},
                     {"rotary_emb_dim", a.rotary_emb_dim},
                     {"rotary_emb_base", a.rotary_emb_base},
                     {"rotary_emb_interleaved", a.rotary_emb_interleaved}};
  } else {
    j["attn_cfg"] = json::object();
  }
  return j;
}

}  // namespace mamba::io
