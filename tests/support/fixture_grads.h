// The fixtures' training conformance checks shared by the CPU and CUDA gradient tests
// (tests/grads_test.cpp, tests/grads_cuda_test.cpp): loss.json within 1e-5, every tensor of
// grads.safetensors within relative error ||g − ref|| / ||ref|| ≤ 1e-3, both ways.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/file_util.h"
#include "io/safetensors.h"
#include "testing.h"

namespace mamba::testing {

constexpr double kLossTolerance = 1e-5;
constexpr float kGradTolerance = 1e-3f;

inline const char* const kGradFixtures[] = {"hf-mamba1",       "hf-mamba2",       "ssm-mamba1", "ssm-mamba2",
                                            "ssm-mamba3-siso", "ssm-mamba3-mimo", "ssm-hybrid"};

// gtest parameter name of a fixture ("ssm-mamba3-siso" -> "ssm_mamba3_siso").
inline std::string fixture_param_name(const ::testing::TestParamInfo<const char*>& p) {
  std::string s = p.param;
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

inline double reference_loss(const std::string& dir) {
  return nlohmann::json::parse(read_file(path_join(dir, "loss.json"))).at("loss").get<double>();
}

// Compares `grads` (name -> tensor, any device) divided by `scale` with the fixture's
// grads.safetensors, both ways, and prints the worst tensor.
inline void expect_grads_match(const std::map<std::string, Tensor>& grads, const std::string& dir,
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
    const float err = rel_error(g, r);
    EXPECT_LE(err, kGradTolerance) << what << ": " << name;
    if (!(err <= worst)) {
      worst = err;
      worst_name = name;
    }
  }
  std::printf("[ %s ] %s: worst relative gradient error %.2e (%s)\n",
              dir.substr(dir.find_last_of('/') + 1).c_str(), what.c_str(), worst, worst_name.c_str());
}

// `mambacpp grads` on the fixture in `dir` with `flags` (e.g. "--device cuda"): the printed loss and
// the written gradients against the reference.
inline void expect_cli_grads_match(const std::string& dir, const std::string& flags, const std::string& tag) {
  const std::string out =
      ::testing::TempDir() + "/grads_" + tag + "_" + dir.substr(dir.find_last_of('/') + 1) + ".safetensors";
  const std::string log = out + ".log";
  const std::string cmd = std::string(MAMBACPP_CLI) + " grads " + flags + " --model " + dir + " --input " +
                          dir + "/input_ids.npy --output " + out + " > " + log;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string printed = read_file(log);
  const size_t at = printed.find("loss ");
  ASSERT_NE(at, std::string::npos) << printed;
  EXPECT_NEAR(std::stod(printed.substr(at + 5)), reference_loss(dir), kLossTolerance) << printed;
  const io::SafeTensors written = io::SafeTensors::open(out);
  std::map<std::string, Tensor> named;
  for (const std::string& name : written.names()) named[name] = written.get_f32(name);
  expect_grads_match(named, dir, tag + " cli");
}

}  // namespace mamba::testing
