// Conformance of training: every model fixture's loss.json (within 1e-5) and grads.safetensors
// (relative error ||g − ref|| / ||ref|| ≤ 1e-3 per tensor, every parameter present), through the
// library and through the `mambacpp grads` command.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/file_util.h"
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

class Grads : public ::testing::TestWithParam<const char*> {};

TEST_P(Grads, LossAndGradientsMatchReference) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  const models::Model model = models::Model::load(dir);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  models::Model grads = model.new_grads();
  models::Activations acts;
  const double loss = model.loss_and_grads(exec, ids, models::next_token_targets(ids), grads, acts);
  const double ref_loss = reference_loss(dir);
  EXPECT_NEAR(loss, ref_loss, kLossTolerance);
  std::printf("[ %s ] loss %.7f, reference %.7f (|diff| %.1e)\n", GetParam(), loss, ref_loss,
              std::fabs(loss - ref_loss));
  std::map<std::string, Tensor> named;
  grads.visit_params([&](const models::ParamRef& p) { named[p.name] = *p.tensor; });
  expect_grads_match(named, dir, "library");
}

TEST_P(Grads, ThroughCli) {
  MAMBA_REQUIRE_FIXTURES(root);
  testing::expect_cli_grads_match(path_join(root, GetParam()), "--threads 2", "cpu");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Grads, ::testing::ValuesIn(testing::kGradFixtures),
                         testing::fixture_param_name);

}  // namespace
}  // namespace mamba
