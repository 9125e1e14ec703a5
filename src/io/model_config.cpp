// The shared part of config.json, in both checkpoint layouts (see model_config.h).
#include "io/model_config.h"

#include <cmath>
#include <limits>

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json_guard.h"

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

}  // namespace

void require_positive(const std::string& source, const char* name, int64_t v) {
  if (v <= 0) throw_error(ErrorCode::parse, source, ": ", name, " must be positive, found ", v);
}

void require_at_most(const std::string& source, const char* name, int64_t v, int64_t max) {
  if (v > max) throw_error(ErrorCode::parse, source, ": ", name, " is ", v, ", above the limit of ", max);
}

int64_t expanded(double expand, int64_t d_model, const std::string& source) {
  return checked_to_int64(expand * static_cast<double>(d_model), std::numeric_limits<int64_t>::min() / 2,
                          kMaxDim * 4, source + ": expand * d_model");
}

void inconsistent(const std::string& source, const std::string& what) {
  throw_error(ErrorCode::shape, source, ": inconsistent dimensions: ", what);
}

bool LmConfig::layer_has_attention(int64_t layer) const {
  for (int64_t i : attn_layer_idx)
    if (i == layer) return true;
  return false;
}

std::string LmConfig::embedding_name() const {
  if (!embedding_tensor.empty()) return embedding_tensor;
  return format == CheckpointFormat::hf ? "backbone.embeddings.weight" : "backbone.embedding.weight";
}

void parse_lm_config(const Reader& r, LmConfig& c) {
  if (c.format == CheckpointFormat::hf) {
    c.d_model = r.integer("hidden_size", 768);
    c.n_layer = r.integer("num_hidden_layers", 32);
    c.vocab_size = r.integer("vocab_size", 50280);
    c.pad_vocab_size_multiple = 1;  // HF stores the embedding at its real size
    c.tie_embeddings = r.boolean("tie_word_embeddings", true);
    c.norm_eps = r.number("layer_norm_epsilon", 1e-5);
    c.residual_in_fp32 = r.boolean("residual_in_fp32", true);
    return;
  }
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
}

void finalize_lm_config(LmConfig& c, const std::string& src) {
  require_positive(src, "d_model", c.d_model);
  require_positive(src, "n_layer", c.n_layer);
  require_positive(src, "vocab_size", c.vocab_size);
  require_positive(src, "pad_vocab_size_multiple", c.pad_vocab_size_multiple);
  require_at_most(src, "d_model", c.d_model, kMaxDim);
  require_at_most(src, "n_layer", c.n_layer, kMaxLayers);
  require_at_most(src, "vocab_size", c.vocab_size, kMaxVocab);
  require_at_most(src, "pad_vocab_size_multiple", c.pad_vocab_size_multiple, kMaxDim);
  require_at_most(src, "d_intermediate", c.d_intermediate, kMaxDim * 16);
  const int64_t m = c.pad_vocab_size_multiple;
  c.vocab_padded = (c.vocab_size + m - 1) / m * m;
  c.mlp_hidden = c.d_intermediate > 0 ? (c.d_intermediate + 127) / 128 * 128 : 0;
  for (int64_t i : c.attn_layer_idx)
    if (i < 0 || i >= c.n_layer)
      throw_error(ErrorCode::parse, src, ": attn_layer_idx entry ", i, " is outside [0, n_layer=", c.n_layer,
                  ")");
}

json read_config_json(const std::string& model_dir) {
  const std::string path = path_join(model_dir, "config.json");
  const std::string text = read_file(path);
  check_json_depth(text, path);
  try {
    return json::parse(quote_nonfinite(text));
  } catch (const json::exception& e) {
    throw_error(ErrorCode::parse, path, ": not valid JSON (", e.what(), ")");
  }
}

json lm_to_mamba_ssm_json(const LmConfig& c) {
  return {{"d_model", c.d_model},
          {"d_intermediate", c.d_intermediate},
          {"n_layer", c.n_layer},
          {"vocab_size", c.vocab_size},
          {"attn_layer_idx", c.attn_layer_idx},
          {"rms_norm", c.rms_norm},
          {"residual_in_fp32", c.residual_in_fp32},
          {"fused_add_norm", true},
          {"pad_vocab_size_multiple", c.pad_vocab_size_multiple},
          {"tie_embeddings", c.tie_embeddings}};
}

}  // namespace mamba::io
