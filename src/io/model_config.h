// Model configuration from config.json, in either checkpoint family: state-spaces/mamba
// `MambaLMHeadModel` (SPEC.md §4.1, missing fields = the reference defaults) and HF transformers
// `mamba` / `mamba2` (§4.8). Everything is validated here, so model code can trust it.
#pragma once
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mamba::io {

enum class CheckpointFormat { mamba_ssm, hf };
// mlp / moe: the FFN sublayers of the families, as stateless mixers (never an ssm_layer).
enum class MixerKind { mamba1, mamba2, mamba3, attention, mlp, moe };
// Mamba-3 ablation switch (training issue): how the state rotates.
enum class RopeMode { data_dependent, none, data_independent };

const char* mixer_kind_name(MixerKind kind);

struct Mamba1Config {                             // SPEC §1.1
  int64_t d_state = 16, d_conv = 4, dt_rank = 0;  // dt_rank 0 = "auto" = ceil(d_model / 16)
  double expand = 2;
  bool conv_bias = true, bias = false;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4, dt_scale = 1.0;
  std::string dt_init = "random";
  // RMSNorm of dt_low, B and C after x_proj: none (Mamba-1), weightless (Falcon-Mamba, eps
  // `mixer_rms_eps`) or with learned weights dt_layernorm / b_layernorm / c_layernorm (Jamba).
  enum class BcdtNorm { none, weightless, learned } bcdt_norm = BcdtNorm::none;
  double bcdt_norm_eps = 1e-6;
  // Derived.
  int64_t d_inner = 0;
};

struct Mamba2Config {  // SPEC §2.1
  int64_t d_state = 128, d_conv = 4, head_dim = 64, d_ssm = -1, n_groups = 1, chunk_size = 256;
  double expand = 2;
  bool D_has_hdim = false, rmsnorm = true, norm_before_gate = false, bias = false, conv_bias = true;
  double dt_limit_lo = 0.0, dt_limit_hi = std::numeric_limits<double>::infinity();
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4, A_init_lo = 1, A_init_hi = 16;
  double norm_eps = 1e-5;
  // Groups of the gated RMSNorm: ngroups in state-spaces/mamba (group_size = d_ssm / ngroups);
  // HF transformers' Mamba2 normalizes the whole row (1), whatever n_groups is.
  int64_t norm_n_groups = 0;  // 0 = n_groups
  // Derived.
  int64_t d_inner = 0, n_heads = 0, d_mlp = 0, conv_dim = 0, d_in_proj = 0;
};

struct Mamba3Config {  // SPEC §3.1
  int64_t d_state = 128, head_dim = 64, n_groups = 1, mimo_rank = 4, chunk_size = 64;
  double expand = 2, rope_fraction = 0.5, A_floor = 1e-4;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4;
  bool is_outproj_norm = false, is_mimo = false;
  RopeMode rope_mode = RopeMode::data_dependent;
  // Derived.
  int64_t d_inner = 0, n_heads = 0, rank = 1, n_rope_angles = 0, d_in_proj = 0;
};

struct AttentionConfig {  // SPEC §4.5
  int64_t num_heads = 0, num_heads_kv = 0, head_dim = 0, mlp_dim = 0, d_conv = 0, rotary_emb_dim = 0;
  bool qkv_proj_bias = true, out_proj_bias = true, causal = false, rotary_emb_interleaved = false;
  double rotary_emb_base = 10000.0, softmax_scale = 0.0;  // 0 = 1/sqrt(head_dim)
  // Derived.
  int64_t qkv_dim = 0, out_dim = 0;
};

struct ModelConfig {
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
  MixerKind ssm_layer = MixerKind::mamba1;
  std::vector<int64_t> attn_layer_idx;
  Mamba1Config mamba1;
  Mamba2Config mamba2;
  Mamba3Config mamba3;
  AttentionConfig attn;
  // Derived.
  int64_t vocab_padded = 0, mlp_hidden = 0;

  MixerKind layer_kind(int64_t layer) const;
  // Does layer `layer` hold an attention KV cache (any mixer of the block)?
  bool layer_has_attention(int64_t layer) const { return layer_kind(layer) == MixerKind::attention; }
  // Tensor-name prefixes of this family ("backbone.embedding" vs HF's "backbone.embeddings").
  std::string embedding_name() const;
  std::string layers_name() const { return layer_prefix.empty() ? "backbone.layers." : layer_prefix; }
  std::string final_norm_name() const {
    return final_norm_tensor.empty() ? "backbone.norm_f.weight" : final_norm_tensor;
  }
  std::string lm_head_name() const { return lm_head_tensor.empty() ? "lm_head.weight" : lm_head_tensor; }
};

// Parses and validates; `source` names the file in error messages ("DIR/config.json").
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
ModelConfig load_model_config(const std::string& model_dir);
// Fills the derived fields and checks consistency (d_inner divisible by head_dim, ...).
void finalize_model_config(ModelConfig& c, const std::string& source);
// The state-spaces/mamba config.json of this model (what training checkpoints write).
nlohmann::json to_mamba_ssm_json(const ModelConfig& c);

}  // namespace mamba::io
