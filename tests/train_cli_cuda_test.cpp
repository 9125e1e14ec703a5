// `mambacpp train / eval --device cuda` through the command: a tiny run in f32 and in bf16 mixed
// precision prints its training throughput, checkpoints (written through the host), resumes on
// the device and on the CPU, and evaluates on the device. Label `cuda` (skipped without one).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/file_util.h"
#include "cuda_testing.h"
#include "testing.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

testing::CliResult run(const std::string& args) {
  return testing::run_cli(MAMBACPP_CLI, args);
}

TEST(TrainCliCuda, TrainsResumesAndEvaluatesOnTheDevice) {
  MAMBA_REQUIRE_CUDA();
  const std::string dir = ::testing::TempDir() + "/mamba_train_cli_cuda";
  fs::remove_all(dir);
  const std::string tiny =
      "--task parity --layer Mamba3 --d-model 32 --headdim 16 --d-state 16 --batch 4 "
      "--length 8 --eval-batches 1 --checkpoint-dir " +
      dir + "/ckpt --log " + dir + "/log.csv";
  testing::CliResult r = run("train " + tiny + " --steps 3 --device cuda");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("on cuda"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("eval @ step 3: length 8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("throughput: "), std::string::npos) << r.output;
  EXPECT_TRUE(file_exists(dir + "/ckpt/step_00000003/model.safetensors"));
  EXPECT_TRUE(file_exists(dir + "/ckpt/step_00000003/optimizer.safetensors"));

  r = run("train --resume " + dir + "/ckpt --steps 5 --device cuda");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("trained to step 5"), std::string::npos) << r.output;
  r = run("train --resume " + dir + "/ckpt --steps 6 -t 1");  // a GPU checkpoint continues on the CPU
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("trained to step 6"), std::string::npos) << r.output;

  r = run("eval --model " + dir + "/ckpt --length 8 --batches 1 --batch 4 --device cuda");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("task parity (chance 0.5000)"), std::string::npos) << r.output;

  r =
      run("train --task parity --layer Mamba2 --d-model 32 --headdim 16 --d-state 16 --batch 4 --length 8 "
          "--eval-batches 1 --steps 3 --device cuda --dtype bf16");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("bf16 mixed precision"), std::string::npos) << r.output;
  r = run("train --task parity --steps 1 --dtype bf16");  // mixed precision needs the device
  EXPECT_EQ(r.status, 1) << r.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mamba
