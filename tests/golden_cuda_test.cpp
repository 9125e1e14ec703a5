// Conformance on the GPU: every model fixture moved to CUDA (Model::to) matches the reference
// logits within 1e-4, for the whole sequence and for prefills of K tokens followed by one-token
// steps, and through `mambacpp logits --device cuda`; bf16 and f16 GEMM weights within 2e-2. Label
// `cuda` (skipped without a device).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/file_util.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "io/npy.h"
#include "models/mamba2.h"
#include "models/mamba3.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

constexpr float kTolerance = 1e-4f;

const char* const kFixtures[] = {"hf-mamba1",       "hf-mamba2",       "ssm-mamba1", "ssm-mamba2",
                                 "ssm-mamba3-siso", "ssm-mamba3-mimo", "ssm-hybrid"};

class GoldenCuda : public ::testing::TestWithParam<const char*> {};

int64_t chunk_of(const models::ModelConfig& c) {
  if (c.ssm_layer == models::MixerKind::mamba2) return c.section<models::Mamba2Config>().chunk_size;
  if (c.ssm_layer == models::MixerKind::mamba3) return c.section<models::Mamba3Config>().chunk_size;
  return 4;
}

TEST_P(GoldenCuda, WholeSequenceAndPrefillThenSteps) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  models::Model model = models::Model::load(dir);
  model.to(Device::cuda);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t batch = ids.size(0), seq_len = ids.size(1);

  models::State state = model.new_state(batch);
  const Tensor logits = model.forward(exec, ids, state);
  ASSERT_EQ(logits.device(), Device::cuda);
  const float whole = testing::max_abs_diff(logits, ref);
  EXPECT_LT(whole, kTolerance) << "whole sequence";

  float worst_steps = 0.0f;
  const int64_t chunk = chunk_of(model.config());
  for (int64_t k :
       {int64_t(0), int64_t(1), std::min(chunk, seq_len), std::min(chunk + 1, seq_len), seq_len - 1}) {
    models::State st = model.new_state(batch);
    if (k > 0) {
      const Tensor pre = model.forward(exec, ids.slice(1, 0, k), st);
      EXPECT_LT(testing::max_abs_diff(pre, ref.slice(1, 0, k).contiguous()), kTolerance) << "prefill K=" << k;
    }
    float worst = 0.0f;
    for (int64_t t = k; t < seq_len; ++t) {
      const Tensor step = model.step(exec, ids.select(1, t).contiguous(), st);
      worst = std::max(worst, testing::max_abs_diff(step, ref.select(1, t).contiguous()));
    }
    EXPECT_LT(worst, kTolerance) << "steps after prefill K=" << k;
    EXPECT_EQ(st.position, seq_len);
    worst_steps = std::max(worst_steps, worst);
  }
  // One line per fixture for the benchmark notes (docs/benchmarks.md, ## CUDA).
  std::printf("[ cuda-golden ] %-16s whole %.3g  steps %.3g\n", GetParam(), whole, worst_steps);
}

// bf16 or f16 linear-layer weights (GEMM operands rounded to that type, fp32 accumulation; bf16 also
// runs the bf16 tensor-core scans): within 2e-2 of the reference, relative to its largest logit.
void expect_reduced_precision_matches(const char* fixture, DType dtype) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, fixture);
  models::Model model = models::Model::load(dir);
  model.to(Device::cuda);
  model.set_matmul_dtype(dtype);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t batch = ids.size(0), seq_len = ids.size(1), k = seq_len / 2;
  models::State state = model.new_state(batch);
  const float whole = testing::scaled_max_diff(model.forward(exec, ids, state), ref);
  EXPECT_LT(whole, 2e-2f) << dtype_name(dtype) << " whole sequence";
  models::State st = model.new_state(batch);
  model.forward(exec, ids.slice(1, 0, k), st);
  float steps = 0.0f;
  for (int64_t t = k; t < seq_len; ++t)
    steps = std::max(steps, testing::scaled_max_diff(model.step(exec, ids.select(1, t).contiguous(), st),
                                                     ref.select(1, t).contiguous()));
  EXPECT_LT(steps, 2e-2f) << dtype_name(dtype) << " steps after prefill K=" << k;
  std::printf("[ cuda-golden-%s ] %-16s whole %.3g  steps %.3g (relative to max |logit|)\n",
              dtype_name(dtype), fixture, whole, steps);
}

TEST_P(GoldenCuda, Bf16Weights) {
  MAMBA_REQUIRE_CUDA();
  expect_reduced_precision_matches(GetParam(), DType::bf16);
}

TEST_P(GoldenCuda, F16Weights) {
  MAMBA_REQUIRE_CUDA();
  expect_reduced_precision_matches(GetParam(), DType::f16);
}

TEST_P(GoldenCuda, ThroughCli) {
  MAMBA_REQUIRE_CUDA();
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t seq_len = ref.size(1);
  for (int64_t k : {int64_t(-1), seq_len / 2}) {
    const std::string out = ::testing::TempDir() + "/golden_cuda_" + GetParam() + ".npy";
    std::string cmd = std::string(MAMBACPP_CLI) + " logits --device cuda --model " + dir + " --input " + dir +
                      "/input_ids.npy --output " + out + " --threads 2";
    if (k >= 0) cmd += " --prefill " + std::to_string(k);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_LT(testing::max_abs_diff(io::read_npy(out), ref), kTolerance) << cmd;
  }
  // --dtype f16 (f16 GEMM weights): within the reduced-precision tolerance above.
  const std::string out = ::testing::TempDir() + "/golden_cuda_f16_" + GetParam() + ".npy";
  const std::string cmd = std::string(MAMBACPP_CLI) + " logits --device cuda --dtype f16 --model " + dir +
                          " --input " + dir + "/input_ids.npy --output " + out + " --threads 2";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  EXPECT_LT(testing::scaled_max_diff(io::read_npy(out).to(Device::cuda), ref), 2e-2f) << cmd;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenCuda, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace mamba
