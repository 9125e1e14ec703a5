// A session on a CUDA model (what `mambacpp generate|chat --device cuda` run): greedy generation
// from every fixture equals the CPU session's tokens, its logits stay on the host and match, and a
// state saved from the GPU session continues on the CPU (and back) exactly like an unbroken CPU
// run. Label `cuda`.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "cuda_testing.h"
#include "runtime/batch.h"
#include "runtime/session.h"
#include "runtime/session_testing.h"
#include "testing.h"

namespace mamba::runtime {
namespace {

using testing_support::fixture_ids;
using testing_support::kFixtures;

std::vector<int32_t> greedy(Session& session, std::span<const int32_t> prompt, int64_t n) {
  sampling::Sampler sampler({.temperature = 0.0f}, static_cast<int32_t>(session.model().config().vocab_size));
  return session.generate(prompt, {.max_tokens = n}, sampler).tokens;
}

class SessionCuda : public ::testing::TestWithParam<const char*> {};

TEST_P(SessionCuda, GreedyGenerationAndStatesMatchTheCpu) {
  MAMBA_REQUIRE_CUDA();
  auto root = testing::fixtures_dir();
  if (!root) GTEST_SKIP() << "fixtures not found: set MAMBACPP_FIXTURES or provide ../shared/fixtures";
  const std::string dir = path_join(*root, GetParam());
  const models::Model cpu = models::Model::load(dir);
  models::Model gpu = models::Model::load(dir);
  gpu.to(Device::cuda);
  const std::vector<int32_t> ids = fixture_ids(dir);
  const std::span<const int32_t> head(ids.data(), ids.size() / 2),
      tail(ids.data() + ids.size() / 2, ids.size() - ids.size() / 2);

  Session on_cpu(cpu), on_gpu(gpu);
  const std::vector<int32_t> expected = greedy(on_cpu, head, 12);
  EXPECT_EQ(greedy(on_gpu, head, 12), expected);
  ASSERT_EQ(on_gpu.logits().device(), Device::cpu);
  EXPECT_LT(testing::max_abs_diff(on_gpu.logits(), on_cpu.logits()), 1e-3f);

  // GPU state -> CPU session, CPU state -> GPU session: both continue like the unbroken runs.
  const std::vector<int32_t> cpu_next = greedy(on_cpu, tail, 8);
  Session gpu_to_cpu(cpu), cpu_to_gpu(gpu);
  gpu_to_cpu.load_state_bytes(on_gpu.state_bytes());
  EXPECT_EQ(greedy(gpu_to_cpu, tail, 8), cpu_next);
  Session replay(cpu);
  greedy(replay, head, 12);
  cpu_to_gpu.load_state_bytes(replay.state_bytes());
  EXPECT_EQ(greedy(cpu_to_gpu, tail, 8), cpu_next);
}

// Batched generation on the GPU (what `bench --generate --device cuda` and the server's stacked
// decode run): the stacked state lives on the device, each row's tokens equal the GPU session's
// alone, and each session continues its own sequence afterwards.
TEST_P(SessionCuda, BatchedGenerationEqualsEachSequenceAlone) {
  MAMBA_REQUIRE_CUDA();
  auto root = testing::fixtures_dir();
  if (!root) GTEST_SKIP() << "fixtures not found: set MAMBACPP_FIXTURES or provide ../shared/fixtures";
  const std::string dir = path_join(*root, GetParam());
  models::Model gpu = models::Model::load(dir);
  gpu.to(Device::cuda);
  const std::vector<int32_t> ids = fixture_ids(dir);
  const std::vector<std::vector<int32_t>> prompts = {
      ids,
      {ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(ids.size() / 2)},
      {ids.begin() + 2, ids.end()}};
  const int32_t vocab = static_cast<int32_t>(gpu.config().vocab_size);
  std::vector<Session> sessions;
  std::vector<sampling::Sampler> samplers;
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) {
    Session s(gpu);
    alone.push_back(greedy(s, p, 10));
    sessions.emplace_back(gpu);
    samplers.emplace_back(sampling::SamplingParams{.temperature = 0.0f}, vocab);
  }
  const BatchResult r = generate_batch(sessions, prompts, {.max_tokens = 10}, samplers);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(r.sequences[i].tokens, alone[i]) << "sequence " << i;
  Session ref(gpu);
  const std::vector<int32_t> more = greedy(ref, prompts[1], 13);
  EXPECT_EQ(greedy(sessions[1], {}, 3), std::vector<int32_t>(more.begin() + 10, more.end()));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SessionCuda, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace mamba::runtime
