// Conformance against the reference: every model fixture's logits (whole sequence, and prefill
// of K tokens followed by one-token steps for several K) within 1e-4 of logits.npy, through the
// library and through the `mambacpp logits` command.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/file_util.h"
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

class Golden : public ::testing::TestWithParam<const char*> {};

// Chunk size of the fixture's scan (0 for Mamba-1), to test a prefill ending on a chunk boundary.
int64_t chunk_of(const models::ModelConfig& c) {
  if (c.ssm_layer == models::MixerKind::mamba2) return c.section<models::Mamba2Config>().chunk_size;
  if (c.ssm_layer == models::MixerKind::mamba3) return c.section<models::Mamba3Config>().chunk_size;
  return 4;
}

TEST_P(Golden, WholeSequenceAndPrefillThenSteps) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  const models::Model model = models::Model::load(dir);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t batch = ids.size(0), seq_len = ids.size(1);
  ASSERT_EQ(ref.shape(), (Shape{batch, seq_len, model.config().vocab_padded}));

  models::State state = model.new_state(batch);
  const Tensor logits = model.forward(exec, ids, state);
  EXPECT_LT(testing::max_abs_diff(logits, ref), kTolerance) << "whole sequence";

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
  }
}

TEST_P(Golden, ThroughCli) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t seq_len = ref.size(1);
  // Whole sequence, then --prefill K for K = 0, 1, a chunk boundary and the last position.
  for (int64_t k : {int64_t(-1), int64_t(0), int64_t(1), std::min<int64_t>(16, seq_len), seq_len - 1}) {
    const std::string out = ::testing::TempDir() + "/golden_" + GetParam() + ".npy";
    std::string cmd = std::string(MAMBACPP_CLI) + " logits --model " + dir + " --input " + dir +
                      "/input_ids.npy --output " + out + " --threads 2";
    if (k >= 0) cmd += " --prefill " + std::to_string(k);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_LT(testing::max_abs_diff(io::read_npy(out), ref), kTolerance) << cmd;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Golden, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace mamba
