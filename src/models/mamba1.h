// Mamba-1's config schema (ssm_cfg, SPEC §1.1): the data of ModelConfig::section<Mamba1Config>(),
// read, derived and written by models/mamba1.cpp; the families built on Mamba-1 (Jamba,
// Falcon-Mamba) fill it too.
#pragma once
#include <cstdint>
#include <string>

namespace mamba::models {

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

}  // namespace mamba::models
