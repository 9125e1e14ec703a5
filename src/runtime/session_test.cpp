// Session on every fixture model: chunked prefill equals one forward, fork and save/restore
// continue exactly, a batch of different-length prompts decodes the same greedy tokens as each
// alone, and eos / stop strings end generation where they should.
#include "runtime/session.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "exec_testing.h"
#include "runtime/batch.h"
#include "runtime/session_testing.h"
#include "testing.h"

namespace mamba::runtime {
namespace {

using testing_support::fixture_ids;
using testing_support::kFixtures;

sampling::Sampler greedy(const models::Model& model) {
  return sampling::Sampler({.temperature = 0.0f}, static_cast<int32_t>(model.config().vocab_size));
}

class SessionFixture : public ::testing::TestWithParam<const char*> {
protected:
  void SetUp() override {
    auto root = testing::fixtures_dir();
    if (!root) GTEST_SKIP() << "fixtures not found: set MAMBACPP_FIXTURES or provide ../shared/fixtures";
    dir_ = path_join(*root, GetParam());
    model_ = std::make_unique<models::Model>(models::Model::load(dir_));
    ids_ = fixture_ids(dir_);
  }
  std::string dir_;
  std::unique_ptr<models::Model> model_;
  std::vector<int32_t> ids_;
};

TEST_P(SessionFixture, ChunkedPrefillEqualsOneForward) {
  models::State state = model_->new_state(1);
  Tensor ids = Tensor::empty({1, static_cast<int64_t>(ids_.size())}, DType::i32);
  std::copy(ids_.begin(), ids_.end(), ids.data<int32_t>());
  const Tensor whole =
      model_->forward(exec, ids, state).select(1, ids.size(1) - 1).contiguous();  // [1, vocab_padded]
  for (int64_t chunk : {int64_t(1), int64_t(7), int64_t(16), int64_t(0)}) {
    Session session(*model_, {.prefill_chunk = chunk});
    const Tensor last = session.prefill(ids_);
    EXPECT_LT(testing::max_abs_diff(last, whole.select(0, 0)), 1e-4f) << "chunk " << chunk;
    EXPECT_EQ(session.position(), static_cast<int64_t>(ids_.size()));
  }
}

TEST_P(SessionFixture, ForkContinuesIdentically) {
  Session a(*model_, {.prefill_chunk = 5});
  a.prefill(std::span(ids_).first(11));
  Session b = a.fork();
  auto sa = greedy(*model_), sb = greedy(*model_);
  const GenerateResult ra = a.generate({}, {.max_tokens = 10}, sa);
  const GenerateResult rb = b.generate({}, {.max_tokens = 10}, sb);
  EXPECT_EQ(ra.tokens, rb.tokens);
  EXPECT_EQ(a.position(), 21);
  EXPECT_EQ(b.position(), 21);
}

TEST_P(SessionFixture, SavedStateContinuesExactly) {
  const std::vector<int32_t> prompt(ids_.begin(), ids_.begin() + 9);
  Session whole(*model_);
  auto s0 = greedy(*model_);
  const GenerateResult all = whole.generate(prompt, {.max_tokens = 12}, s0);
  ASSERT_EQ(all.tokens.size(), 12u);

  Session first(*model_);
  auto s1 = greedy(*model_);
  const GenerateResult head = first.generate(prompt, {.max_tokens = 5}, s1);
  const std::string bytes = first.state_bytes();
  Session second(*model_);
  second.load_state_bytes(bytes);
  EXPECT_EQ(second.position(), first.position());
  EXPECT_EQ(second.history(), first.history());
  auto s2 = greedy(*model_);
  const GenerateResult tail = second.generate({}, {.max_tokens = 7}, s2);
  std::vector<int32_t> joined = head.tokens;
  joined.insert(joined.end(), tail.tokens.begin(), tail.tokens.end());
  EXPECT_EQ(joined, all.tokens);
}

TEST_P(SessionFixture, BatchOfDifferentLengthsEqualsAlone) {
  const std::vector<std::vector<int32_t>> prompts = {{ids_.begin(), ids_.begin() + 3},
                                                     {ids_.begin() + 4, ids_.begin() + 21},
                                                     {ids_.begin() + 2, ids_.begin() + 11}};
  const GenerateParams params{.max_tokens = 8};
  std::vector<Session> sessions;
  std::vector<sampling::Sampler> samplers;
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) {
    Session s(*model_);
    auto sampler = greedy(*model_);
    alone.push_back(s.generate(p, params, sampler).tokens);
    sessions.emplace_back(*model_);
    samplers.push_back(greedy(*model_));
  }
  const BatchResult r = generate_batch(sessions, prompts, params, samplers);
  EXPECT_EQ(r.stacked, model_->config().attn_layer_idx.empty());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(r.sequences[i].tokens, alone[i]) << "sequence " << i;
    EXPECT_EQ(sessions[i].position(), static_cast<int64_t>(prompts[i].size() + alone[i].size()));
  }
  // Each session continues its own sequence after the batch.
  Session ref(*model_);
  auto s0 = greedy(*model_), s1 = greedy(*model_);
  const auto more = ref.generate(prompts[1], {.max_tokens = 11}, s0).tokens;
  const auto next = sessions[1].generate({}, {.max_tokens = 3}, s1).tokens;
  EXPECT_EQ(std::vector<int32_t>(more.begin() + 8, more.end()), next);
}

TEST_P(SessionFixture, BatchRowsStopAtTheirOwnEos) {
  Session probe(*model_);
  auto s = greedy(*model_);
  const auto free_run = probe.generate(ids_, {.max_tokens = 6}, s).tokens;
  GenerateParams params{.max_tokens = 6};
  params.stop.eos_ids = {free_run[2]};
  std::vector<Session> sessions;
  sessions.emplace_back(*model_);
  sessions.emplace_back(*model_);
  std::vector<sampling::Sampler> samplers = {greedy(*model_), greedy(*model_)};
  const std::vector<std::vector<int32_t>> prompts = {ids_, {ids_.begin(), ids_.begin() + 5}};
  const BatchResult r = generate_batch(sessions, prompts, params, samplers);
  const auto first_eos = std::find(free_run.begin(), free_run.end(), free_run[2]);
  EXPECT_EQ(r.sequences[0].tokens, std::vector<int32_t>(free_run.begin(), first_eos + 1));
  EXPECT_EQ(r.sequences[0].reason, StopReason::eos);
  EXPECT_EQ(sessions[0].position(), static_cast<int64_t>(ids_.size() + r.sequences[0].tokens.size()));
}

// The server's in-place rows (allocate_rows / copy_row / leading_rows): rows joined into a larger
// stack, stepped through a view of the leading rows, one row leaving by the last moving into its
// place: each row's logits equal its sequence stepped alone (to rounding: a batched GEMM may sum in
// another order than the one-row GEMV), and a row read back continues alone.
TEST_P(SessionFixture, StackedRowsInPlaceEqualAlone) {
  if (!can_stack(*model_)) {  // attention layers: the server steps each sequence alone
    EXPECT_FALSE(model_->config().attn_layer_idx.empty());
    return;
  }
  const std::vector<std::vector<int32_t>> prompts = {{ids_.begin(), ids_.begin() + 3},
                                                     {ids_.begin() + 4, ids_.begin() + 21},
                                                     {ids_.begin() + 2, ids_.begin() + 11}};
  std::vector<Session> alone, joining;
  for (const auto& p : prompts) {
    alone.emplace_back(*model_);
    alone.back().prefill(p);
    joining.emplace_back(*model_);
    joining.back().prefill(p);
  }
  models::State stacked = allocate_rows(joining[0].session_state().state, 5);  // capacity beyond the rows
  ASSERT_EQ(stacked.batch, 5);
  for (int64_t r = 0; r < 3; ++r)
    copy_row(stacked, r, joining[static_cast<size_t>(r)].session_state().state, 0);
  auto step_rows = [&](const std::vector<int32_t>& tokens) {
    Tensor ids = Tensor::empty({static_cast<int64_t>(tokens.size())}, DType::i32);
    for (size_t i = 0; i < tokens.size(); ++i) ids.data<int32_t>()[i] = tokens[i];
    models::State view = leading_rows(stacked, ids.size(0));
    const Tensor logits = model_->step(testing::exec, ids, view);
    write_back_rows(stacked, view);
    return logits;
  };
  const Tensor both = step_rows({7, 8, 9});
  for (size_t i = 0; i < 3; ++i) {
    const Tensor want = alone[i].decode(static_cast<int32_t>(7 + i));
    EXPECT_LT(testing::max_abs_diff(both.select(0, static_cast<int64_t>(i)), want), 1e-5f) << "row " << i;
  }
  copy_row(stacked, 0, stacked, 2);  // row 0 leaves: the last row (sequence 2) takes its place
  const Tensor two = step_rows({5, 6});
  EXPECT_LT(testing::max_abs_diff(two.select(0, 0), alone[2].decode(5)), 1e-5f);
  EXPECT_LT(testing::max_abs_diff(two.select(0, 1), alone[1].decode(6)), 1e-5f);
  // Read back, sequence 1 continues as it does alone.
  joining[1].session_state().state = state_row(stacked, 1, alone[1].position());
  EXPECT_LT(testing::max_abs_diff(joining[1].decode(4), alone[1].decode(4)), 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SessionFixture, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// Text, eos and stop strings, on one model with a fixture tokenizer (the model's 300 ids decode
// to single bytes and short merges).
TEST(SessionText, StopStringAndEos) {
  MAMBA_REQUIRE_FIXTURES(root);
  const models::Model model = models::Model::load(path_join(root, "ssm-mamba2"));
  const auto tokenizer =
      tok::Tokenizer::from_file(path_join(root, "tokenizers/bpe-gpt2-style/tokenizer.json"));
  const std::vector<int32_t> prompt = fixture_ids(path_join(root, "ssm-mamba2"));
  Session free_session(model);
  auto s0 = greedy(model);
  std::string streamed;
  const GenerateResult free_run = free_session.generate(prompt, {.max_tokens = 24}, s0, tokenizer.get(),
                                                        [&](int32_t, std::string_view text) {
                                                          streamed += text;
                                                          return true;
                                                        });
  EXPECT_EQ(streamed, free_run.text);
  EXPECT_EQ(free_run.text, tokenizer->decode(free_run.tokens));
  ASSERT_GE(free_run.text.size(), 12u);

  const std::string stop = free_run.text.substr(6, 3);
  GenerateParams params{.max_tokens = 24};
  params.stop.stop_strings = {"never-generated", stop};
  Session stopped(model);
  auto s1 = greedy(model);
  streamed.clear();
  const GenerateResult r =
      stopped.generate(prompt, params, s1, tokenizer.get(), [&](int32_t, std::string_view text) {
        streamed += text;
        return true;
      });
  EXPECT_EQ(r.reason, StopReason::stop_string);
  EXPECT_EQ(r.stop_index, 1);
  EXPECT_EQ(r.text, free_run.text.substr(0, free_run.text.find(stop)));
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(stopped.position(), static_cast<int64_t>(prompt.size() + r.tokens.size()));

  GenerateParams eos_params{.max_tokens = 24};
  eos_params.stop.eos_ids = {free_run.tokens[4]};
  Session eos_session(model);
  auto s2 = greedy(model);
  const GenerateResult e = eos_session.generate(prompt, eos_params, s2, tokenizer.get());
  const size_t at =
      std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[4]) - free_run.tokens.begin();
  EXPECT_EQ(e.reason, StopReason::eos);
  EXPECT_EQ(e.tokens.size(), at + 1);
  EXPECT_EQ(e.text,
            tokenizer->decode(std::vector<int32_t>(free_run.tokens.begin(), free_run.tokens.begin() + at)));
}

TEST(SessionErrors, BadIdsAndNothingToContinue) {
  MAMBA_REQUIRE_FIXTURES(root);
  const models::Model model = models::Model::load(path_join(root, "ssm-mamba1"));
  Session session(model);
  const std::vector<int32_t> bad = {1, 2, 100000};
  EXPECT_THROW(session.prefill(bad), Error);
  EXPECT_EQ(session.position(), 0);
  auto s = greedy(model);
  EXPECT_THROW(session.generate({}, {.max_tokens = 3}, s), Error);
}

}  // namespace
}  // namespace mamba::runtime
