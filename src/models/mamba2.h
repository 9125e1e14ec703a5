// Mamba-2's config schema (ssm_cfg, SPEC §2.1): the data of ModelConfig::section<Mamba2Config>(),
// read, derived and written by models/mamba2.cpp; the hybrid families (models/families/) fill it too.
#pragma once
#include <cstdint>
#include <limits>

namespace mamba::models {

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

}  // namespace mamba::models
