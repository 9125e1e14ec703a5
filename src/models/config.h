// A model's configuration: the shared fields (io::LmConfig) and the schema of each architecture's
// section. The schemas are data only: each architecture's file (models/<arch>.cpp, its ArchSpec)
// parses, derives, validates and writes its own; this file only dispatches to them.
#pragma once
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/model_config.h"

namespace mamba::models {

// mlp / moe: the FFN sublayers of the families, as stateless mixers (never an ssm_layer).
enum class MixerKind { mamba1, mamba2, mamba3, attention, mlp, moe };
// Mamba-3 ablation switch (training issue): how the state rotates.
enum class RopeMode { data_dependent, none, data_independent };

// "Mamba1", "MHA", "MoE", ...: the architecture's name (ssm_cfg.layer for the SSM mixers).
const char* mixer_kind_name(MixerKind kind);

struct Mamba1Config {                             // SPEC §1.1 (models/mamba1.cpp)
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

struct Mamba2Config {  // SPEC §2.1 (models/mamba2.cpp)
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

struct Mamba3Config {  // SPEC §3.1 (models/mamba3.cpp)
  int64_t d_state = 128, head_dim = 64, n_groups = 1, mimo_rank = 4, chunk_size = 64;
  double expand = 2, rope_fraction = 0.5, A_floor = 1e-4;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4;
  bool is_outproj_norm = false, is_mimo = false;
  RopeMode rope_mode = RopeMode::data_dependent;
  // Derived (d_in_proj: ops/mamba3_gates/mamba3_layout.h).
  int64_t d_inner = 0, n_heads = 0, rank = 1, n_rope_angles = 0, d_in_proj = 0;
};

struct AttentionConfig {  // SPEC §4.5 (models/attention.cpp)
  int64_t num_heads = 0, num_heads_kv = 0, head_dim = 0, mlp_dim = 0, d_conv = 0, rotary_emb_dim = 0;
  bool qkv_proj_bias = true, out_proj_bias = true, causal = false, rotary_emb_interleaved = false;
  double rotary_emb_base = 10000.0, softmax_scale = 0.0;  // 0 = 1/sqrt(head_dim)
  // Derived.
  int64_t qkv_dim = 0, out_dim = 0;
};

struct ModelConfig : io::LmConfig {
  MixerKind ssm_layer = MixerKind::mamba1;  // the mixer of every layer not in attn_layer_idx
  Mamba1Config mamba1;
  Mamba2Config mamba2;
  Mamba3Config mamba3;
  AttentionConfig attn;

  MixerKind layer_kind(int64_t layer) const {
    return layer_has_attention(layer) ? MixerKind::attention : ssm_layer;
  }
};

// Parses and validates; `source` names the file in error messages ("DIR/config.json").
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
ModelConfig load_model_config(const std::string& model_dir);
// Fills the derived fields and checks consistency (d_inner divisible by head_dim, ...).
void finalize_model_config(ModelConfig& c, const std::string& source);
// The state-spaces/mamba config.json of this model (what training checkpoints write).
nlohmann::json to_mamba_ssm_json(const ModelConfig& c);

// `mambacpp bench`'s shapes of an architecture ("mamba1", "mamba3-mimo", "hybrid", ...) at the
// given width, finalized; nullopt-like: returns false for a name no architecture knows.
bool bench_model_config(const std::string& name, int64_t d_model, int64_t n_layer, int64_t d_intermediate,
                        ModelConfig& out);
// The names bench_model_config knows, in registry order.
std::vector<std::string> bench_model_names();

}  // namespace mamba::models
