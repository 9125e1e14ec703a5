// The model families on the GPU (label `cuda`, skipped without a device): every family fixture
// moved to CUDA within 1e-4 of the reference in f32 (whole sequence, prefill K ∈ {1, L/2, L−1} +
// one-token steps), bf16 GEMM weights within 2e-2 (relative to the largest logit), and the loss and
// gradients on the GPU (tests/support/family_fixtures.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/file_util.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "family_fixtures.h"
#include "io/npy.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

class FamilyCuda : public ::testing::TestWithParam<const char*> {};

TEST_P(FamilyCuda, F32WholeAndPrefillThenSteps) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("families/") + GetParam());
  models::Model model = models::Model::load(dir);
  model.to(Device::cuda);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t batch = ids.size(0), L = ids.size(1);
  models::State state = model.new_state(batch);
  const Tensor logits = model.forward(exec, ids, state);
  ASSERT_EQ(logits.device(), Device::cuda);
  const float whole = testing::max_abs_diff(logits, ref);
  EXPECT_LT(whole, 1e-4f) << "whole sequence";
  float worst = 0.0f;
  for (int64_t k : {int64_t(1), L / 2, L - 1}) {
    models::State st = model.new_state(batch);
    EXPECT_LT(
        testing::max_abs_diff(model.forward(exec, ids.slice(1, 0, k), st), ref.slice(1, 0, k).contiguous()),
        1e-4f)
        << "prefill K=" << k;
    for (int64_t t = k; t < L; ++t)
      worst = std::max(worst, testing::max_abs_diff(model.step(exec, ids.select(1, t).contiguous(), st),
                                                    ref.select(1, t).contiguous()));
  }
  EXPECT_LT(worst, 1e-4f) << "steps";
  std::printf("[ cuda-family ] %-15s f32 whole %.3g  steps %.3g\n", GetParam(), whole, worst);
}

TEST_P(FamilyCuda, Bf16Weights) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("families/") + GetParam());
  models::Model model = models::Model::load(dir);
  model.to(Device::cuda);
  model.set_matmul_dtype(DType::bf16);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t batch = ids.size(0), L = ids.size(1), k = L / 2;
  models::State state = model.new_state(batch);
  const float whole = testing::scaled_max_diff(model.forward(exec, ids, state), ref);
  EXPECT_LT(whole, 2e-2f) << "bf16 whole sequence";
  models::State st = model.new_state(batch);
  model.forward(exec, ids.slice(1, 0, k), st);
  float steps = 0.0f;
  for (int64_t t = k; t < L; ++t)
    steps = std::max(steps, testing::scaled_max_diff(model.step(exec, ids.select(1, t).contiguous(), st),
                                                     ref.select(1, t).contiguous()));
  EXPECT_LT(steps, 2e-2f) << "bf16 steps after prefill K=" << k;
  std::printf("[ cuda-family-bf16 ] %-15s whole %.3g  steps %.3g (relative to max |logit|)\n", GetParam(),
              whole, steps);
}

TEST_P(FamilyCuda, LossAndGradients) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("families/") + GetParam());
  models::Model model = models::Model::load(dir);
  model.to(Device::cuda);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  models::Model grads = model.new_grads();
  models::Activations acts;
  const double loss = model.loss_and_grads(exec, ids, models::next_token_targets(ids), grads, acts);
  const double ref_loss =
      nlohmann::json::parse(read_file(path_join(dir, "loss.json"))).at("loss").get<double>();
  EXPECT_NEAR(loss, ref_loss, 1e-5);
  std::map<std::string, Tensor> named;
  grads.visit_params([&](const models::ParamRef& p) { named[p.name] = *p.tensor; });
  testing::expect_family_grads_match(named, dir, "cuda");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FamilyCuda, ::testing::ValuesIn(testing::kFamilyFixtures),
                         testing::family_param_name);

}  // namespace
}  // namespace mamba
