// Mamba-3's config schema (ssm_cfg, SPEC §3.1): the data of ModelConfig::section<Mamba3Config>(),
// read, derived and written by models/mamba3.cpp.
#pragma once
#include <cstdint>

namespace mamba::models {

// Ablation switch (training issue): how the state rotates.
enum class RopeMode { data_dependent, none, data_independent };

struct Mamba3Config {  // SPEC §3.1 (models/mamba3.cpp)
  int64_t d_state = 128, head_dim = 64, n_groups = 1, mimo_rank = 4, chunk_size = 64;
  double expand = 2, rope_fraction = 0.5, A_floor = 1e-4;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4;
  bool is_outproj_norm = false, is_mimo = false;
  RopeMode rope_mode = RopeMode::data_dependent;
  // Derived (d_in_proj: ops/mamba3_gates/mamba3_layout.h).
  int64_t d_inner = 0, n_heads = 0, rank = 1, n_rope_angles = 0, d_in_proj = 0;
};

}  // namespace mamba::models
