// Packed runs (PackedTrainer) on the CPU: each run of a sweep gives, bit for bit, what it gives
// trained alone; runs.csv holds every run's final numbers; a sweep continues each run from its
// own folder; sweep files are checked field by field.
#include "train/packed.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::train {
namespace {

namespace fs = std::filesystem;

TrainConfig sweep_config(const std::string& root) {
  TrainConfig c;
  c.model = {
      {"d_model", 16}, {"n_layer", 1}, {"ssm_cfg", {{"layer", "Mamba3"}, {"d_state", 16}, {"headdim", 16}}}};
  c.task = "parity";
  c.curriculum = {.min_length = 3, .start_max = 8, .end_max = 12, .n_stages = 2, .steps_per_stage = 3};
  c.batch = 4;
  c.steps = 6;
  c.schedule.kind = ScheduleKind::constant;
  c.schedule.warmup_steps = 2;
  c.adamw.weight_decay = 0.1;
  c.eval_batches = 1;
  c.checkpoint_dir = root;
  c.log_csv = root + "/log.csv";
  return c;
}

std::vector<std::vector<float>> weights(const Trainer& t) {
  std::vector<std::vector<float>> out;
  const_cast<models::Model&>(t.model()).visit_params(
      [&](const models::ParamRef& p) { out.push_back(p.tensor->to_vector()); });
  return out;
}

void expect_same(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b,
                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t k = 0; k < a.size(); ++k) {
    ASSERT_EQ(a[k].size(), b[k].size()) << what;
    EXPECT_EQ(std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(float)), 0)
        << what << " parameter " << k;
  }
}

TEST(Packed, EachRunGivesItsBitsAloneAndTheResultsFile) {
  const std::string root = ::testing::TempDir() + "/mamba_packed";
  fs::remove_all(root);
  const TrainConfig base = sweep_config(root + "/sweep");
  const std::vector<RunSpec> runs = sweep_grid({1, 2}, {1e-3, 1e-2});
  ASSERT_EQ(runs.size(), 4u);
  PackedTrainer packed(base, runs, {});
  std::vector<std::vector<double>> losses(runs.size());
  PackedCallbacks cb;
  cb.on_step = [&](size_t i, const StepStats& s) { losses[i].push_back(s.loss); };
  packed.run(cb);
  for (size_t i = 0; i < runs.size(); ++i) {
    TrainConfig alone_config = run_config(base, runs[i]);
    alone_config.checkpoint_dir = root + "/alone";
    alone_config.log_csv.clear();
    Trainer alone(alone_config);
    std::vector<double> ref;
    RunCallbacks rc;
    rc.on_step = [&](const StepStats& s) { ref.push_back(s.loss); };
    alone.run(rc);
    EXPECT_EQ(losses[i], ref) << run_name(runs[i]);
    expect_same(weights(packed.trainer(i)), weights(alone), run_name(runs[i]));
    EXPECT_TRUE(file_exists(root + "/sweep/" + run_name(runs[i]) + "/latest")) << "its own checkpoints";
    EXPECT_TRUE(file_exists(root + "/sweep/" + run_name(runs[i]) + "/log.csv")) << "its own log";
    fs::remove_all(root + "/alone");
  }
  EXPECT_NE(losses[0], losses[1]) << "the learning rate reaches the run";
  EXPECT_NE(losses[0], losses[2]) << "the seed reaches the run";
  // runs.csv: a header and one row per run, its final loss as the run reported it.
  std::istringstream csv(read_file(root + "/sweep/runs.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "run,seed,lr,steps,loss,acc,eval_length,eval_acc,eval_scaled_acc");
  for (size_t i = 0; i < runs.size(); ++i) {
    ASSERT_TRUE(std::getline(csv, line));
    EXPECT_EQ(line.rfind(run_name(runs[i]) + ",", 0), 0u) << line;
    char loss[32];
    std::snprintf(loss, sizeof loss, ",%.6f,", losses[i].back());
    EXPECT_NE(line.find(loss), std::string::npos) << line;
  }
  EXPECT_FALSE(std::getline(csv, line));
  fs::remove_all(root);
}

TEST(Packed, ContinuesEachRunFromItsFolder) {
  const std::string root = ::testing::TempDir() + "/mamba_packed_resume";
  fs::remove_all(root);
  TrainConfig whole_config = sweep_config(root + "/whole");
  const std::vector<RunSpec> runs = sweep_grid({7}, {3e-3, 6e-3});
  PackedTrainer whole(whole_config, runs, {});
  whole.run();

  TrainConfig part = sweep_config(root + "/parts");
  part.steps = 3;
  PackedTrainer first(part, runs, {});
  first.run();
  part.steps = 6;
  PackedTrainer second(part, runs, {});  // picks up each run at its step 3
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(second.trainer(i).steps_done(), 3);
  second.run();
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(second.trainer(i).steps_done(), 6);
    expect_same(weights(second.trainer(i)), weights(whole.trainer(i)), "resumed " + run_name(runs[i]));
  }
  fs::remove_all(root);
}

TEST(Packed, SweepFiles) {
  const std::string dir = ::testing::TempDir() + "/mamba_sweeps";
  fs::create_directories(dir);
  auto load = [&](const std::string& text) {
    write_file_atomic(dir + "/s.json", text);
    return load_sweep(dir + "/s.json");
  };
  const std::vector<RunSpec> grid = load(R"({"seeds": [1, 2, 3], "lrs": [1e-4, 1e-3]})");
  ASSERT_EQ(grid.size(), 6u);
  EXPECT_EQ(grid[1].seed, 1u);
  EXPECT_DOUBLE_EQ(grid[1].lr, 1e-3);
  EXPECT_EQ(grid[5].seed, 3u);
  const std::vector<RunSpec> list = load(R"([{"seed": 4, "lr": 0.01}, {"seed": 9, "lr": 0.002}])");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1].seed, 9u);
  EXPECT_EQ(run_name(list[1]), "seed9_lr0.002");
  for (const char* bad : {R"({"seeds": [1], "lrs": [1e-3], "steps": 4})", R"({"seeds": [], "lrs": [1e-3]})",
                          R"({"seeds": [-1], "lrs": [1e-3]})", R"({"seeds": [1], "lrs": [0]})",
                          R"([{"seed": 1, "lr": 0.1}, {"seed": 1, "lr": 0.1}])", R"([{"seed": 1}])", R"([])",
                          R"("runs")", R"({"seeds": [1.5], "lrs": [1e-3]})", "{"}) {
    try {
      load(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("s.json"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mamba::train
