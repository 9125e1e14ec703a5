// Attention's config schema (attn_cfg, SPEC §4.5): the data of
// ModelConfig::section<AttentionConfig>(), read, derived and written by models/attention.cpp.
#pragma once
#include <cstdint>

namespace mamba::models {

struct AttentionConfig {  // SPEC §4.5 (models/attention.cpp)
  int64_t num_heads = 0, num_heads_kv = 0, head_dim = 0, mlp_dim = 0, d_conv = 0, rotary_emb_dim = 0;
  bool qkv_proj_bias = true, out_proj_bias = true, causal = false, rotary_emb_interleaved = false;
  double rotary_emb_base = 10000.0, softmax_scale = 0.0;  // 0 = 1/sqrt(head_dim)
  // Derived.
  int64_t qkv_dim = 0, out_dim = 0;
};

}  // namespace mamba::models
