// Conformance of training on the GPU: every model fixture with grads.safetensors, moved to CUDA
// in f32, matches loss.json within 1e-5 and every gradient of grads.safetensors within relative
// error ||g − ref|| / ||ref|| ≤ 1e-3 (the CPU test's tolerances), through the library and through
// `mambacpp grads --device cuda`; the gradients stay on the device and accumulate across calls.
// Label `cuda` (skipped without a device).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/file_util.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "fixture_grads.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

using testing::expect_grads_match;
using testing::kLossTolerance;
using testing::reference_loss;

class GradsCuda : public ::testing::TestWithParam<const char*> {};

TEST_P(GradsCuda, LossAndGradientsMatchReference) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  if (!file_exists(path_join(dir, "grads.safetensors"))) GTEST_SKIP() << "no grads.safetensors";
  models::Model model = models::Model::load(dir);
  model.to(Device::cuda);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const Tensor targets = models::next_token_targets(ids);
  models::Model grads = model.new_grads();
  models::Activations acts;
  const double loss = model.loss_and_grads(exec, ids, targets, grads, acts);
  const double ref_loss = reference_loss(dir);
  EXPECT_NEAR(loss, ref_loss, kLossTolerance);
  std::printf("[ %s ] cuda loss %.7f, reference %.7f (|diff| %.1e)\n", GetParam(), loss, ref_loss,
              std::fabs(loss - ref_loss));
  std::map<std::string, Tensor> named;
  grads.visit_params([&](const models::ParamRef& p) {
    EXPECT_EQ(p.tensor->device(), Device::cuda) << p.name;
    named[p.name] = *p.tensor;
  });
  expect_grads_match(named, dir, "cuda library");

  // A second call reuses the activations and accumulates: the gradients double, the loss repeats.
  const double again = model.loss_and_grads(exec, ids, targets, grads, acts);
  EXPECT_NEAR(again, loss, 1e-6);
  named.clear();
  grads.visit_params([&](const models::ParamRef& p) { named[p.name] = *p.tensor; });
  expect_grads_match(named, dir, "cuda accumulated x2", 2.0f);
}

TEST_P(GradsCuda, ThroughCli) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  if (!file_exists(path_join(dir, "grads.safetensors"))) GTEST_SKIP() << "no grads.safetensors";
  testing::expect_cli_grads_match(dir, "--device cuda", "cuda");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GradsCuda, ::testing::ValuesIn(testing::kGradFixtures),
                         testing::fixture_param_name);

}  // namespace
}  // namespace mamba
