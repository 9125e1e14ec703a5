// The training loop on the GPU: the CUDA trainer's loss curve matches the CPU trainer's over the
// first steps (same batches, same initialization) for Mamba-1/2/3 and a hybrid with an MLP, and
// falls; a run checkpointed on CUDA resumes on CUDA and on the CPU with the same curve; bf16
// mixed precision keeps fp32 master weights and follows the f32 curve loosely. Label `cuda`.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "core/file_util.h"
#include "cuda_testing.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace mamba::train {
namespace {

namespace fs = std::filesystem;

// Losses of the first steps agree this closely between devices (the kernels' summation orders
// differ; Adam's normalized steps carry that into the weights, so it grows slowly per step).
constexpr double kCurveTolerance = 2e-3;

TrainConfig small_config(const std::string& layer) {
  TrainConfig c;
  c.model = {{"d_model", 32}, {"n_layer", 2}, {"ssm_cfg", {{"layer", layer}, {"d_state", 16}}}};
  if (layer != "Mamba1") c.model["ssm_cfg"]["headdim"] = 16;
  if (layer == "Mamba2") {  // hybrid: attention in layer 1 and a gated MLP in every block
    c.model["attn_layer_idx"] = {1};
    c.model["attn_cfg"] = {{"num_heads", 2}, {"head_dim", 16}, {"causal", true}};
    c.model["d_intermediate"] = 48;
  }
  c.task = "selective_copy";
  c.curriculum = {.min_length = 32, .start_max = 40, .end_max = 40, .n_stages = 1, .steps_per_stage = 1};
  c.batch = 8;
  c.steps = 10;
  c.schedule.lr = 3e-3;
  c.schedule.kind = ScheduleKind::constant;
  c.adamw.weight_decay = 0.1;
  c.eval_batches = 1;
  c.seed = 11;
  return c;
}

std::vector<double> losses(Trainer& t) {
  std::vector<double> out;
  RunCallbacks callbacks;
  callbacks.on_step = [&](const StepStats& s) { out.push_back(s.loss); };
  t.run(callbacks);
  return out;
}

// Mean of the last three losses (each step draws a new batch: single losses are noisy). On the
// CPU these configs fall by 0.07-0.09 from the first step over ten steps.
double tail_mean(const std::vector<double>& l) {
  return l.size() < 3 ? l.back() : (l[l.size() - 1] + l[l.size() - 2] + l[l.size() - 3]) / 3.0;
}

void expect_curves_close(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], ref[i], tol * std::max(1.0, std::fabs(ref[i]))) << what << " step " << i + 1;
}

class TrainerCuda : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainerCuda, LossCurveMatchesCpuAndFalls) {
  MAMBA_REQUIRE_CUDA();
  const TrainConfig c = small_config(GetParam());
  Trainer cpu(c);
  const std::vector<double> ref = losses(cpu);
  Trainer gpu(c, TrainDevice{Device::cuda, DType::f32});
  const std::vector<double> got = losses(gpu);
  expect_curves_close(got, ref, kCurveTolerance, std::string("cuda vs cpu ") + GetParam());
  EXPECT_LT(tail_mean(got), got.front() - 0.03) << "the loss falls";
  std::printf("[ %s ] loss cpu %.5f -> %.5f, cuda %.5f -> %.5f\n", GetParam(), ref.front(), ref.back(),
              got.front(), got.back());
  // Parameters and evaluation stay on the device; the evaluation agrees with the CPU's.
  const_cast<models::Model&>(gpu.model()).visit_params([&](const models::ParamRef& p) {
    EXPECT_EQ(p.tensor->device(), Device::cuda) << p.name;
  });
  EXPECT_NEAR(gpu.evaluate_now().loss, cpu.evaluate_now().loss, kCurveTolerance * 2);
}

INSTANTIATE_TEST_SUITE_P(Layers, TrainerCuda, ::testing::Values("Mamba1", "Mamba2", "Mamba3"));

TEST(TrainerCudaCheckpoint, ResumesOnCudaAndOnCpu) {
  MAMBA_REQUIRE_CUDA();
  const std::string root = ::testing::TempDir() + "/mamba_trainer_cuda_resume";
  fs::remove_all(root);
  TrainConfig c = small_config("Mamba3");
  c.steps = 6;
  const TrainDevice cuda{Device::cuda, DType::f32};
  Trainer whole(c, cuda);
  const std::vector<double> expected = losses(whole);

  c.checkpoint_dir = root + "/ckpt";
  c.checkpoint_every = 3;
  c.steps = 3;
  Trainer first(c, cuda);
  const std::vector<double> head = losses(first);
  const std::string dir = root + "/ckpt/step_00000003";
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer.json"})
    EXPECT_TRUE(file_exists(path_join(dir, f))) << f;

  TrainConfig resumed = load_checkpoint_config(root + "/ckpt");
  resumed.steps = 6;
  for (const TrainDevice& where : {cuda, TrainDevice{}}) {
    Trainer second(resumed, root + "/ckpt", where);
    EXPECT_EQ(second.steps_done(), 3);
    std::vector<double> all = head;
    for (double l : losses(second)) all.push_back(l);
    expect_curves_close(all, expected, where.device == Device::cuda ? 1e-5 : kCurveTolerance,
                        where.device == Device::cuda ? "resumed on cuda" : "resumed on cpu");
    fs::remove_all(root + "/ckpt/step_00000006");  // the next resume starts from step 3 again
    write_file_atomic(root + "/ckpt/latest", "step_00000003\n");
  }
  fs::remove_all(root);
}

TEST(TrainerCudaMixedPrecision, Bf16FollowsTheF32Curve) {
  MAMBA_REQUIRE_CUDA();
  for (const char* layer : {"Mamba1", "Mamba2", "Mamba3"}) {
    const TrainConfig c = small_config(layer);
    Trainer f32(c, TrainDevice{Device::cuda, DType::f32});
    const std::vector<double> ref = losses(f32);
    Trainer bf16(c, TrainDevice{Device::cuda, DType::bf16});
    const std::vector<double> got = losses(bf16);
    // bf16 GEMM operands: ~3 significant digits per product, fp32 accumulation.
    expect_curves_close(got, ref, 3e-2, std::string("bf16 vs f32 ") + layer);
    EXPECT_LT(tail_mean(got), got.front() - 0.03) << layer;
    const_cast<models::Model&>(bf16.model()).visit_params([&](const models::ParamRef& p) {
      EXPECT_EQ(p.tensor->dtype(), DType::f32) << "master weight " << p.name;
    });
    std::printf("[ %s ] bf16 loss %.5f -> %.5f (f32 %.5f -> %.5f)\n", layer, got.front(), got.back(),
                ref.front(), ref.back());
  }
  // Mixed precision needs the device.
  EXPECT_ANY_THROW(Trainer(small_config("Mamba1"), TrainDevice{Device::cpu, DType::bf16}));
}

}  // namespace
}  // namespace mamba::train
