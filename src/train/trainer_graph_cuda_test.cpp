// The trainer's captured CUDA-graph step and packed runs on the GPU: a run whose steps replay
// graphs follows the eager run (losses, gradient norms and final weights, f32 and bf16 mixed
// precision, batch shapes changing with the curriculum), and each run of a packed sweep gives the
// bits it gives trained alone. Label `cuda`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_testing.h"
#include "train/packed.h"
#include "train/trainer.h"

namespace mamba::train {
namespace {

TrainConfig config_for(const std::string& layer) {
  TrainConfig c;
  c.model = {{"d_model", 32}, {"n_layer", 2}, {"ssm_cfg", {{"layer", layer}, {"d_state", 16}}}};
  if (layer != "Mamba1") c.model["ssm_cfg"]["headdim"] = 16;
  if (layer == "Mamba2") c.model["d_intermediate"] = 48;  // a gated MLP in every block
  c.task = "parity";
  // Lengths 3..24: the batch's padded length changes from step to step (several graphs).
  c.curriculum = {.min_length = 3, .start_max = 24, .end_max = 24, .n_stages = 1, .steps_per_stage = 1};
  c.batch = 8;
  c.steps = 12;
  c.schedule.lr = 3e-3;
  c.schedule.warmup_steps = 3;
  c.adamw.weight_decay = 0.1;
  c.eval_batches = 1;
  c.seed = 5;
  return c;
}

struct Trace {
  std::vector<double> loss, norm;
  std::vector<std::vector<float>> weights;
};

Trace weights_of(Trainer& t, Trace tr) {
  const_cast<models::Model&>(t.model()).visit_params(
      [&](const models::ParamRef& p) { tr.weights.push_back(p.tensor->to_vector()); });
  return tr;
}

Trace train(const TrainConfig& c, const TrainDevice& where, int64_t* replays = nullptr) {
  Trainer t(c, where);
  Trace tr;
  while (t.steps_done() < c.steps) {
    const StepStats s = t.step();
    tr.loss.push_back(s.loss);
    tr.norm.push_back(s.grad_norm);
  }
  if (replays) *replays = t.graph_replays();
  return weights_of(t, tr);
}

void expect_same_bits(const Trace& got, const Trace& ref, const std::string& what) {
  ASSERT_EQ(got.loss.size(), ref.loss.size()) << what;
  for (size_t i = 0; i < got.loss.size(); ++i) {
    EXPECT_EQ(got.loss[i], ref.loss[i]) << what << " loss, step " << i + 1;
    EXPECT_EQ(got.norm[i], ref.norm[i]) << what << " gradient norm, step " << i + 1;
  }
  ASSERT_EQ(got.weights.size(), ref.weights.size()) << what;
  for (size_t k = 0; k < got.weights.size(); ++k) {
    ASSERT_EQ(got.weights[k].size(), ref.weights[k].size());
    EXPECT_EQ(
        std::memcmp(got.weights[k].data(), ref.weights[k].data(), got.weights[k].size() * sizeof(float)), 0)
        << what << " parameter " << k;
  }
}

// Graph against eager: on the H100 (2026-12-07) the replayed steps' losses and gradient norms agreed
// with the eager ones to every printed digit (6) but not bit for bit — kernels chosen differently
// while a stream is captured (cuBLAS's, presumably; not traced yet). So within a relative 1e-5 here
// (losses, norms) and 1e-4 of each parameter's largest magnitude after 12 AdamW steps.
void expect_close(const Trace& got, const Trace& ref, const std::string& what) {
  ASSERT_EQ(got.loss.size(), ref.loss.size()) << what;
  for (size_t i = 0; i < got.loss.size(); ++i) {
    EXPECT_NEAR(got.loss[i], ref.loss[i], 1e-5 * std::fabs(ref.loss[i])) << what << " loss, step " << i + 1;
    EXPECT_NEAR(got.norm[i], ref.norm[i], 1e-5 * std::fabs(ref.norm[i]))
        << what << " gradient norm, step " << i + 1;
  }
  ASSERT_EQ(got.weights.size(), ref.weights.size()) << what;
  for (size_t k = 0; k < got.weights.size(); ++k) {
    ASSERT_EQ(got.weights[k].size(), ref.weights[k].size());
    float scale = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < ref.weights[k].size(); ++i) {
      scale = std::max(scale, std::fabs(ref.weights[k][i]));
      diff = std::max(diff, std::fabs(got.weights[k][i] - ref.weights[k][i]));
    }
    EXPECT_LE(diff, 1e-4f * std::max(scale, 1e-3f)) << what << " parameter " << k;
  }
}

class TrainerGraph : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainerGraph, ReplaysFollowTheEagerSteps) {
  MAMBA_REQUIRE_CUDA();
  const TrainConfig c = config_for(GetParam());
  for (DType dtype : {DType::f32, DType::bf16}) {
    const TrainDevice eager{Device::cuda, dtype};
    const Trace ref = train(c, eager);
    int64_t replays = 0;
    TrainDevice graph{Device::cuda, dtype};
    graph.graph = true;
    const Trace got = train(c, graph, &replays);
    const std::string what = std::string(GetParam()) + " " + dtype_name(dtype);
    expect_close(got, ref, what);
    // 12 steps over a few padded lengths: each length's first step runs eagerly, its second
    // records; at least half the steps replay.
    EXPECT_GE(replays, c.steps / 2) << what;
    std::printf("[ %s ] %lld of %lld steps replayed a graph; loss %.5f -> %.5f\n", what.c_str(),
                static_cast<long long>(replays), static_cast<long long>(c.steps), got.loss.front(),
                got.loss.back());
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, TrainerGraph, ::testing::Values("Mamba1", "Mamba2", "Mamba3"));

TEST(PackedCuda, EachRunGivesItsBitsAlone) {
  MAMBA_REQUIRE_CUDA();
  TrainConfig c = config_for("Mamba3");
  c.steps = 8;
  const std::vector<RunSpec> runs = sweep_grid({3, 4}, {1e-3, 4e-3});
  TrainDevice where{Device::cuda, DType::f32};
  where.graph = true;
  PackedTrainer packed(c, runs, where);
  std::vector<Trace> got(runs.size());
  while (true) {
    const std::vector<StepStats> stats = packed.step();
    if (stats.empty()) break;
    ASSERT_EQ(stats.size(), runs.size());
    for (size_t i = 0; i < runs.size(); ++i) {
      got[i].loss.push_back(stats[i].loss);
      got[i].norm.push_back(stats[i].grad_norm);
    }
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_GT(packed.trainer(i).graph_replays(), 0) << run_name(runs[i]);
    const Trace alone = train(run_config(c, runs[i]), where);
    expect_same_bits(weights_of(packed.trainer(i), got[i]), alone, "packed " + run_name(runs[i]));
  }
}

}  // namespace
}  // namespace mamba::train
