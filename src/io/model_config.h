// What every model's config.json shares, in either checkpoint layout: state-spaces/mamba
// `MambaLMHeadModel` (SPEC.md §4.1, missing fields = the reference defaults) and HF transformers
// (§4.8): width, depth, vocabulary, norms, tying, the attention-layer pattern and the checkpoint
// names. Each architecture reads its own section (ssm_cfg, attn_cfg or its HF fields) in its file
// under models/; models/config.h joins the two into ModelConfig.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/config_reader.h"

namespace mamba::io {

enum class CheckpointFormat { mamba_ssm, hf };

struct LmConfig {
  CheckpointFormat format = CheckpointFormat::mamba_ssm;
  // A model family of models/families/ (HF `model_type`: nemotron_h, jamba, ...), empty for the
  // state-spaces and HF mamba / mamba2 / falcon_mamba layouts handled here. The family reads its
  // own fields from `family_json` (the whole config.json) and sets the shared fields below.
  std::string family;
  nlohmann::json family_json;
  // Multipliers of µP-style families: embeddings ·embed_scale, logits ·logits_scale.
  double embed_scale = 1.0, logits_scale = 1.0;
  // nn.Embedding(padding_idx): the lookup gives this row no gradient (-1 = none).
  int64_t embedding_pad_id = -1;
  // Per-layer kind names for `info` (a family sets them; empty = from layer_kind).
  std::vector<std::string> layer_names;
  // Checkpoint names a family overrides (empty = the state-spaces / HF mamba names).
  std::string embedding_tensor, layer_prefix, final_norm_tensor, lm_head_tensor;
  int64_t d_model = 2560, n_layer = 64, vocab_size = 50277, pad_vocab_size_multiple = 8;
  int64_t d_intermediate = 0;  // gated-MLP width per block (0 = no MLP)
  bool rms_norm = true, residual_in_fp32 = true, tie_embeddings = true;
  double norm_eps = 1e-5;
  std::vector<int64_t> attn_layer_idx;  // the layers that are attention (the rest: the SSM mixer)
  // Derived.
  int64_t vocab_padded = 0, mlp_hidden = 0;

  // Does layer `layer` hold an attention KV cache (any mixer of the block)?
  bool layer_has_attention(int64_t layer) const;
  // Tensor-name prefixes of this family ("backbone.embedding" vs HF's "backbone.embeddings").
  std::string embedding_name() const;
  std::string layers_name() const { return layer_prefix.empty() ? "backbone.layers." : layer_prefix; }
  std::string final_norm_name() const {
    return final_norm_tensor.empty() ? "backbone.norm_f.weight" : final_norm_tensor;
  }
  std::string lm_head_name() const { return lm_head_tensor.empty() ? "lm_head.weight" : lm_head_tensor; }
};

// DIR/config.json as JSON (Python's bare Infinity / NaN accepted); one-line errors naming the file.
nlohmann::json read_config_json(const std::string& model_dir);
// The shared fields of the layout `c.format` names, from the whole config.json.
void parse_lm_config(const Reader& r, LmConfig& c);
// Checks the shared fields and fills their derived ones (vocab_padded, mlp_hidden).
void finalize_lm_config(LmConfig& c, const std::string& source);
// The shared keys of a state-spaces/mamba config.json.
nlohmann::json lm_to_mamba_ssm_json(const LmConfig& c);

// Validation helpers for the architectures' sections: one-line errors naming the source.
void require_positive(const std::string& source, const char* name, int64_t v);
// Upper bounds far above any real model, checked before anything derived from them is computed or
// allocated: products of a few of them stay far below 2^63, and a hostile config (2^31 layers,
// expand = 1e308) fails with the field's name instead of overflowing or exhausting memory.
inline constexpr int64_t kMaxDim = int64_t{1} << 20, kMaxLayers = int64_t{1} << 16,
                         kMaxVocab = int64_t{1} << 28;
void require_at_most(const std::string& source, const char* name, int64_t v, int64_t max);
// expand · d_model as an integer width (d_inner), refusing NaN, infinities and absurd sizes.
int64_t expanded(double expand, int64_t d_model, const std::string& source);
[[noreturn]] void inconsistent(const std::string& source, const std::string& what);

}  // namespace mamba::io
