// The public API (include/mambacpp) as a library user sees it: the golden fixture's logits through
// Model::forward and Model::step, a Session's state file continuing a sequence exactly, greedy
// generation repeated, and internal errors arriving as mambacpp::Error. Only the fixture lookup
// comes from the test support.
#include <gtest/gtest.h>
#include <mambacpp/mambacpp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "testing.h"

namespace {

namespace mc = mambacpp;

float max_abs_diff(const mc::Tensor& a, const mc::Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const mc::Tensor x = a.contiguous(), y = b.contiguous();
  float worst = 0;
  for (int64_t i = 0; i < std::min(x.numel(), y.numel()); ++i)
    worst = std::max(worst, std::abs(x.f32()[i] - y.f32()[i]));
  return worst;
}

TEST(Api, ForwardAndStepMatchTheFixture) {
  MAMBA_REQUIRE_FIXTURES(dir);
  const std::string model_dir = mc::path_join(dir, "ssm-mamba2");
  const mc::Model model = mc::Model::load(model_dir);
  const mc::Tensor ids = mc::read_npy(mc::path_join(model_dir, "input_ids.npy")).to(mc::DType::i64);
  const mc::Tensor ref = mc::read_npy(mc::path_join(model_dir, "logits.npy"));
  mc::Context ctx;
  mc::State state = model.new_state(ids.size(0));
  EXPECT_LT(max_abs_diff(model.forward(ctx, ids, state), ref), 1e-4f);
  EXPECT_EQ(state.position(), ids.size(1));

  mc::State stepped = model.new_state(ids.size(0));
  for (int64_t t = 0; t < ids.size(1); ++t) {
    const mc::Tensor logits = model.step(ctx, ids.select(1, t).contiguous(), stepped);
    EXPECT_LT(max_abs_diff(logits, ref.select(1, t)), 1e-4f) << "step " << t;
  }
}

TEST(Api, SessionStateFileContinuesTheSequence) {
  MAMBA_REQUIRE_FIXTURES(dir);
  const mc::Model model = mc::Model::load(mc::path_join(dir, "ssm-mamba2"));
  const std::vector<int32_t> prompt = {5, 17, 42, 7, 99, 3};
  mc::Session a(model);
  a.prefill(prompt);
  const std::string path = ::testing::TempDir() + "/api_test.mstate";
  a.save_state(path);
  const mc::Tensor next_a = a.decode(11);

  mc::Session b(model);
  b.load_state(path);
  EXPECT_EQ(b.position(), static_cast<int64_t>(prompt.size()));
  const mc::Tensor next_b = b.decode(11);
  EXPECT_EQ(max_abs_diff(next_a, next_b), 0.0f);
  EXPECT_EQ(max_abs_diff(b.logits(), next_b), 0.0f);

  // The same state through memory: bytes of `a` continue in `c` as in `a`.
  mc::Session c(model);
  c.load_state_bytes(a.state_bytes());
  EXPECT_EQ(c.position(), a.position());
  EXPECT_EQ(max_abs_diff(c.decode(23), a.decode(23)), 0.0f);
}

TEST(Api, GreedyGenerationRepeats) {
  MAMBA_REQUIRE_FIXTURES(dir);
  const mc::Model model = mc::Model::load(mc::path_join(dir, "ssm-mamba2"));
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  std::vector<std::vector<int32_t>> runs;
  for (int i = 0; i < 2; ++i) {
    mc::Session session(model);
    mc::Sampler sampler({.temperature = 0.0f}, static_cast<int32_t>(model.vocab_size()));
    int called = 0;
    const mc::GenerateResult r = session.generate(prompt, {.max_tokens = 6}, sampler, nullptr,
                                                  [&](int32_t, std::string_view) { return ++called > 0; });
    EXPECT_EQ(r.reason, mc::StopReason::length);
    EXPECT_EQ(r.tokens.size(), 6u);
    EXPECT_EQ(called, 6);
    EXPECT_EQ(session.position(), static_cast<int64_t>(prompt.size() + 6));  // the last token consumed too
    runs.push_back(r.tokens);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST(Api, InternalErrorsArriveAsPublicErrors) {
  try {
    mc::Model::load("/nonexistent/api_test_model");
    FAIL() << "loaded a missing model";
  } catch (const mc::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/api_test_model"), std::string::npos) << e.what();
  }
  mc::KernelPlan plan;
  EXPECT_THROW(plan.set("ssd_bwd=sideways"), mc::Error);
  EXPECT_THROW(mc::parse_device("tpu"), mc::Error);
}

TEST(Api, ByteTokenizerAndFallbackTemplate) {
  const auto tok = mc::Tokenizer::byte_level();
  const std::vector<int32_t> ids = tok->encode("hé!");
  EXPECT_EQ(ids.size(), 4u);  // é is two bytes
  EXPECT_EQ(tok->decode(ids), "hé!");
  const std::string prompt =
      mc::ChatTemplate::fallback().render({{"user", "What is 2 + 2?"}}, /*add_generation_prompt=*/true);
  EXPECT_NE(prompt.find("What is 2 + 2?"), std::string::npos) << prompt;
}

}  // namespace
