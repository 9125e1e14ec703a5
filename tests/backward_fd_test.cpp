// Whole-model backward on small random models whose options the fixtures do not cover
// (LayerNorm, untied head, biases, gated MLP, Mamba-2 without the gated norm / with the MLP part /
// per-channel D / norm before gate, Mamba-3 head norm / MIMO / other rotations, attention with
// conv and MLP part): the gradient of every parameter is checked against a central difference
// of the loss along that gradient's direction.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "exec_testing.h"
#include "grad_check.h"
#include "models/config.h"
#include "models/model.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace mamba {
namespace {

struct Case {
  const char* name;
  const char* config;  // state-spaces/mamba config.json
};

const Case kCases[] = {
    {"mamba1_layernorm_untied_mlp_bias",
     R"({"d_model": 16, "n_layer": 2, "vocab_size": 21, "rms_norm": false, "tie_embeddings": false,
         "d_intermediate": 8, "ssm_cfg": {"layer": "Mamba1", "d_state": 4, "bias": true}})"},
    {"mamba2_mlp_part_ungated_norm_hdim_D",
     R"({"d_model": 16, "n_layer": 2, "vocab_size": 21, "ssm_cfg": {"layer": "Mamba2", "d_state": 4,
         "headdim": 4, "ngroups": 2, "d_ssm": 16, "rmsnorm": false, "D_has_hdim": true, "bias": true,
         "chunk_size": 4}})"},
    {"mamba2_norm_before_gate",
     R"({"d_model": 16, "n_layer": 2, "vocab_size": 21, "ssm_cfg": {"layer": "Mamba2", "d_state": 4,
         "headdim": 8, "norm_before_gate": true, "chunk_size": 3}})"},
    {"mamba3_siso_head_norm_full_rope",
     R"({"d_model": 16, "n_layer": 2, "vocab_size": 21, "ssm_cfg": {"layer": "Mamba3", "d_state": 8,
         "headdim": 8, "is_outproj_norm": true, "rope_fraction": 1.0, "chunk_size": 4}})"},
    {"mamba3_mimo_head_norm_groups_fixed_rope",
     R"({"d_model": 16, "n_layer": 2, "vocab_size": 21, "ssm_cfg": {"layer": "Mamba3", "d_state": 8,
         "headdim": 8, "ngroups": 2, "is_mimo": true, "mimo_rank": 2, "is_outproj_norm": true,
         "rope_mode": "data_independent", "chunk_size": 4}})"},
    {"mamba3_siso_no_rope",
     R"({"d_model": 16, "n_layer": 1, "vocab_size": 21, "ssm_cfg": {"layer": "Mamba3", "d_state": 8,
         "headdim": 8, "rope_mode": "none", "chunk_size": 4}})"},
    {"hybrid_attention_conv_mlp",
     R"({"d_model": 16, "n_layer": 2, "vocab_size": 21, "attn_layer_idx": [1],
         "attn_cfg": {"num_heads": 2, "num_heads_kv": 1, "d_conv": 3, "mlp_dim": 16, "rotary_emb_dim": 4,
                      "causal": true},
         "ssm_cfg": {"layer": "Mamba1", "d_state": 4}})"},
};

class BackwardFd : public ::testing::TestWithParam<Case> {};

TEST_P(BackwardFd, EveryParameterAlongItsGradient) {
  const models::ModelConfig config =
      models::parse_model_config(nlohmann::json::parse(GetParam().config), GetParam().name);
  models::Model model = models::Model::random(config, 7);
  // Δ ≈ softplus(0) instead of the init's 0.001..0.1, so that A, Δ and the angles matter.
  model.visit_params([](const models::ParamRef& p) {
    const std::string& n = p.name;
    if (n.ends_with("dt_bias") || n.ends_with("dt_proj.bias")) p.tensor->fill(0.0f);
  });
  model.params_updated(exec);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> token(0, config.vocab_size - 1);
  Tensor ids = Tensor::empty({2, 9}, DType::i64);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = token(rng);
  const Tensor targets = models::next_token_targets(ids);
  models::Model grads = model.new_grads();
  models::Activations acts;
  model.loss_and_grads(exec, ids, targets, grads, acts);

  std::vector<testing::GradInput> inputs;
  std::vector<Tensor> grad_tensors;
  grads.visit_params([&](const models::ParamRef& p) { grad_tensors.push_back(*p.tensor); });
  size_t i = 0;
  model.visit_params([&](const models::ParamRef& p) {
    inputs.push_back({p.name, *p.tensor, grad_tensors[i++]});
  });
  auto loss = [&] {
    model.params_updated(exec);
    models::Activations a;
    return ops::cross_entropy_fwd(exec, model.forward_train(exec, ids, a), targets);
  };
  testing::expect_directional_derivatives(loss, inputs);
}

INSTANTIATE_TEST_SUITE_P(Configs, BackwardFd, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace mamba
