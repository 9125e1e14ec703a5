// Training config parsing, checkpoint files, and the resume guarantee: a run interrupted at a
// checkpoint and resumed gives the same losses, bit for bit, as an uninterrupted run.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "exec_testing.h"
#include "models/mamba3.h"
#include "train/checkpoint.h"

namespace mamba::train {
namespace {

namespace fs = std::filesystem;

TrainConfig tiny_config(const std::string& model_layer) {
  TrainConfig c;
  c.model = {{"d_model", 16}, {"n_layer", 1}, {"ssm_cfg", {{"layer", model_layer}, {"d_state", 16}}}};
  if (model_layer != "Mamba1") c.model["ssm_cfg"]["headdim"] = 16;
  c.task = "parity";
  c.curriculum = {.min_length = 3, .start_max = 8, .end_max = 12, .n_stages = 2, .steps_per_stage = 3};
  c.batch = 4;
  c.steps = 6;
  c.schedule.lr = 1e-2;
  c.schedule.warmup_steps = 2;
  c.adamw.weight_decay = 0.1;
  c.eval_batches = 1;
  c.seed = 3;
  return c;
}

std::vector<double> losses(Trainer& t) {
  std::vector<double> out;
  RunCallbacks callbacks;
  callbacks.on_step = [&](const StepStats& s) { out.push_back(s.loss); };
  t.run(callbacks);
  return out;
}

// A trainer's parameters (visit_params is the model's one walk over them; it only reads here).
std::vector<Tensor> params_of(const Trainer& t) {
  std::vector<Tensor> out;
  const_cast<models::Model&>(t.model()).visit_params(
      [&](const models::ParamRef& p) { out.push_back(*p.tensor); });
  return out;
}

TEST(TrainConfig, ParsesValidatesAndRoundTrips) {
  const nlohmann::json j = {{"task", "arithmetic"},
                            {"batch", 8},
                            {"lr", 3e-3},
                            {"schedule", "constant"},
                            {"curriculum", {{"end_max", 64}, {"n_stages", 1}}},
                            {"seed", 5}};
  const TrainConfig c = parse_train_config(j, "cfg.json");
  EXPECT_EQ(c.task, "arithmetic");
  EXPECT_EQ(c.batch, 8);
  EXPECT_EQ(c.schedule.kind, ScheduleKind::constant);
  EXPECT_EQ(c.curriculum.end_max, 64);
  EXPECT_EQ(to_json(parse_train_config(to_json(c), "again")), to_json(c));
  EXPECT_THROW(parse_train_config({{"btach", 8}}, "cfg.json"), Error);
  EXPECT_THROW(parse_train_config({{"batch", "8"}}, "cfg.json"), Error);
  EXPECT_THROW(parse_train_config({{"batch", 0}}, "cfg.json"), Error);
  EXPECT_THROW(parse_train_config({{"curriculum", {{"min_lenght", 3}}}}, "cfg.json"), Error);
  try {
    parse_train_config({{"lr", -1.0}}, "cfg.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: field 'lr'"), std::string::npos) << e.what();
  }
}

TEST(TrainConfig, ModelVocabularyComesFromTheTask) {
  TrainConfig c = tiny_config("Mamba3");
  c.model["ssm_cfg"]["rope_mode"] = "none";
  const auto task = make_task("arithmetic_brackets");
  const models::ModelConfig m = model_config_for(c, *task);
  EXPECT_EQ(m.vocab_size, 12);
  EXPECT_EQ(m.section<models::Mamba3Config>().rope_mode, models::RopeMode::none);
  c.model["vocab_size"] = 4;
  EXPECT_THROW(model_config_for(c, *task), Error);
}

TEST(Trainer, ResumeReplaysTheSameLossCurve) {
  const std::string root = ::testing::TempDir() + "/mamba_trainer_resume";
  fs::remove_all(root);
  TrainConfig c = tiny_config("Mamba3");
  Trainer whole(c);
  const std::vector<double> expected = losses(whole);
  ASSERT_EQ(expected.size(), 6u);

  c.checkpoint_dir = root + "/ckpt";
  c.checkpoint_every = 3;
  c.log_csv = root + "/log.csv";
  c.steps = 3;
  Trainer first(c);
  const std::vector<double> head = losses(first);
  const std::string dir = root + "/ckpt/step_00000003";
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer.json"})
    EXPECT_TRUE(file_exists(path_join(dir, f))) << f;
  EXPECT_EQ(resolve_checkpoint(root + "/ckpt"), dir);
  EXPECT_EQ(models::Model::load(dir).config().vocab_size, 3);  // a plain state-spaces/mamba folder

  TrainConfig resumed_config = load_checkpoint_config(root + "/ckpt");
  resumed_config.steps = 6;
  Trainer second(resumed_config, root + "/ckpt");
  EXPECT_EQ(second.steps_done(), 3);
  std::vector<double> all = head;
  for (double l : losses(second)) all.push_back(l);
  ASSERT_EQ(all.size(), expected.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], expected[i]) << "step " << i + 1;

  // Checkpoints kept: the newest two; the log has one row per step.
  EXPECT_TRUE(fs::exists(root + "/ckpt/step_00000006"));
  EXPECT_TRUE(fs::exists(root + "/ckpt/step_00000003"));
  const std::string log = read_file(root + "/log.csv");
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 7);
  fs::remove_all(root);
}

// Rows of similar length as groups (length_buckets): the same steps up to rounding, for a
// model of every SSM kind, and the option's limits.
TEST(Trainer, LengthBucketsTrainLikeTheWholeBatch) {
  for (const char* layer : {"Mamba1", "Mamba2", "Mamba3"}) {
    TrainConfig c = tiny_config(layer);
    c.batch = 8;
    c.curriculum = {.min_length = 3, .start_max = 20, .end_max = 40, .n_stages = 2, .steps_per_stage = 3};
    // Loss, gradient norm (before clipping: AdamW alone would hide a wrongly scaled gradient)
    // and accuracy of every step.
    auto curve = [](Trainer& t) {
      std::vector<std::array<double, 3>> out;
      RunCallbacks callbacks;
      callbacks.on_step = [&](const StepStats& s) { out.push_back({s.loss, s.grad_norm, s.accuracy}); };
      t.run(callbacks);
      return out;
    };
    Trainer whole(c);
    const auto expected = curve(whole);
    for (int64_t k : {2, 3, 8}) {
      c.length_buckets = k;
      Trainer grouped(c);
      const auto got = curve(grouped);
      ASSERT_EQ(got.size(), expected.size());
      for (size_t i = 0; i < got.size(); ++i)
        for (int j = 0; j < 3; ++j)
          EXPECT_NEAR(got[i][j], expected[i][j], 2e-5 * std::abs(expected[i][j]) + 1e-12)
              << layer << " k " << k << " step " << i + 1 << " value " << j;
      // The weights after 6 steps of AdamW: the same up to rounding too.
      const std::vector<Tensor> a = params_of(whole), b = params_of(grouped);
      ASSERT_EQ(a.size(), b.size());
      double worst = 0;
      for (size_t t = 0; t < a.size(); ++t)
        for (int64_t i = 0; i < a[t].numel(); ++i)
          worst = std::max(worst, static_cast<double>(std::abs(a[t].f32()[i] - b[t].f32()[i])));
      EXPECT_LT(worst, 1e-4) << layer << " k " << k;
    }
  }
  TrainConfig c = tiny_config("Mamba2");
  c.length_buckets = 5;  // > batch 4
  EXPECT_THROW(Trainer{c}, Error);
  EXPECT_THROW(parse_train_config({{"batch", 4}, {"length_buckets", 0}}, "cfg.json"), Error);
  EXPECT_EQ(parse_train_config({{"batch", 4}, {"length_buckets", 2}}, "cfg.json").length_buckets, 2);
}

TEST(Trainer, EvaluateReportsScaledAccuracy) {
  Trainer t(tiny_config("Mamba2"));
  const EvalStats e = evaluate(exec, t.model(), t.task(), 20, 8, 2, 0);
  EXPECT_EQ(e.length, 20);
  EXPECT_EQ(e.answers, 16);
  EXPECT_NEAR(e.scaled_accuracy, (e.accuracy - 0.5) / 0.5, 1e-12);
  EXPECT_GT(e.loss, 0.0);
}

}  // namespace
}  // namespace mamba::train
