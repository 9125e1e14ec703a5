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
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

constexpr double kLossTolerance = 1e-5;
constexpr float kGradTolerance = 1e-3f;

const char* const kFixtures[] = {"hf-mamba1",       "hf-mamba2",       "ssm-mamba1", "ssm-mamba2",
                                 "ssm-mamba3-siso", "ssm-mamba3-mimo", "ssm-hybrid"};

class GradsCuda : public ::testing::TestWithParam<const char*> {};

double reference_loss(const std::string& dir) {
  return nlohmann::json::parse(read_file(path_join(dir, "loss.json"))).at("loss").get<double>();
}

// Compares `grads` (name -> tensor, any device) with the fixture's grads.safetensors, both ways.
void expect_grads_match(const std::map<std::string, Tensor>& grads, const std::string& dir,
                        const std::string& what, float scale = 1.0f) {
  const io::SafeTensors ref = io::SafeTensors::open(path_join(dir, "grads.safetensors"));
  EXPECT_EQ(grads.size(), ref.size()) << what;
  float worst = 0.0f;
  std::string worst_name;
  for (const std::string& name : ref.names()) {
    const auto it = grads.find(name);
    if (it == grads.end()) {
      ADD_FAILURE() << what << ": no gradient for " << name;
      continue;
    }
    const Tensor r = ref.get_f32(name);
    ASSERT_EQ(it->second.numel(), r.numel()) << what << ": " << name;
    Tensor g = it->second.to(Device::cpu).contiguous().view(r.shape());
    if (scale != 1.0f) {
      g = g.copy();
      for (int64_t i = 0; i < g.numel(); ++i) g.f32()[i] /= scale;
    }
    const float err = testing::rel_error(g, r);
    EXPECT_LE(err, kGradTolerance) << what << ": " << name;
    if (!(err <= worst)) {
      worst = err;
      worst_name = name;
    }
  }
  std::printf("[ %s ] %s: worst relative gradient error %.2e (%s)\n",
              dir.substr(dir.find_last_of('/') + 1).c_str(), what.c_str(), worst, worst_name.c_str());
}

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
  const double loss = model.loss_and_grads(ids, targets, grads, acts);
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
  const double again = model.loss_and_grads(ids, targets, grads, acts);
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
  const std::string out = ::testing::TempDir() + "/grads_cuda_" + GetParam() + ".safetensors";
  const std::string log = out + ".log";
  const std::string cmd = std::string(MAMBACPP_CLI) + " grads --device cuda --model " + dir + " --input " +
                          dir + "/input_ids.npy --output " + out + " > " + log;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string printed = read_file(log);
  const size_t at = printed.find("loss ");
  ASSERT_NE(at, std::string::npos) << printed;
  EXPECT_NEAR(std::stod(printed.substr(at + 5)), reference_loss(dir), kLossTolerance) << printed;
  const io::SafeTensors written = io::SafeTensors::open(out);
  std::map<std::string, Tensor> named;
  for (const std::string& name : written.names()) named[name] = written.get_f32(name);
  expect_grads_match(named, dir, "cuda cli");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GradsCuda, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace mamba
