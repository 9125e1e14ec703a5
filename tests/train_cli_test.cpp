// `mambacpp train` and `mambacpp eval` through the command: a tiny run with a checkpoint and a
// CSV log, resuming it to more steps, evaluating it, and one-line errors for bad flags/configs.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "testing.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

using Result = testing::CliResult;

Result run(const std::string& args) {
  return testing::run_cli(MAMBACPP_CLI, args);
}

size_t count_lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(TrainCli, TrainsResumesAndEvaluates) {
  const std::string dir = ::testing::TempDir() + "/mamba_train_cli";
  fs::remove_all(dir);
  const std::string tiny =
      "--task parity --layer Mamba2 --d-model 16 --headdim 16 --d-state 16 --batch 4 "
      "--length 6 --eval-batches 1 -t 1 --checkpoint-dir " +
      dir + "/ckpt --log " + dir + "/log.csv";
  Result r = run("train " + tiny + " --steps 3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("eval @ step 3: length 6"), std::string::npos) << r.output;
  EXPECT_TRUE(file_exists(dir + "/ckpt/step_00000003/model.safetensors"));
  EXPECT_EQ(count_lines(read_file(dir + "/log.csv")), 4u);

  r = run("train --resume " + dir + "/ckpt --steps 5 -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("trained to step 5"), std::string::npos) << r.output;
  EXPECT_EQ(count_lines(read_file(dir + "/log.csv")), 6u);

  r = run("eval --model " + dir + "/ckpt --length 6 9 --batches 1 --batch 4 -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("task parity (chance 0.5000)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("       9 "), std::string::npos) << r.output;
  fs::remove_all(dir);
}

TEST(TrainCli, PackedRunsWriteEachRunAndTheResults) {
  const std::string dir = ::testing::TempDir() + "/mamba_train_cli_packed";
  fs::remove_all(dir);
  const std::string tiny =
      "train --task parity --layer Mamba3 --d-model 16 --headdim 16 --d-state 16 --batch 4 "
      "--length 6 --eval-batches 1 -t 1 --checkpoint-dir " +
      dir + " --log " + dir + "/log.csv";
  Result r = run(tiny + " --steps 3 --runs 2 --lrs 1e-3,4e-3 --plot " + dir + "/runs.png");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("tokens/s aggregate over 4 runs"), std::string::npos) << r.output;
  for (const char* name : {"seed0_lr0.001", "seed0_lr0.004", "seed1_lr0.001", "seed1_lr0.004"}) {
    EXPECT_TRUE(file_exists(dir + "/" + name + "/step_00000003/model.safetensors")) << name;
    EXPECT_EQ(count_lines(read_file(dir + "/" + name + "/log.csv")), 4u) << name;
    EXPECT_NE(r.output.find(name), std::string::npos) << "the table names " << name;
  }
  EXPECT_EQ(count_lines(read_file(dir + "/runs.csv")), 5u);
  EXPECT_EQ(read_file(dir + "/runs.png").substr(1, 3), "PNG") << "one chart of the four runs";
  // Run again with more steps: every run continues from its folder.
  r = run(tiny + " --steps 5 --runs 2 --lrs 1e-3,4e-3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(count_lines(read_file(dir + "/seed1_lr0.004/log.csv")), 6u);
  fs::remove_all(dir);
}

TEST(TrainCli, BadInputIsOneErrorLine) {
  const std::string cfg = ::testing::TempDir() + "/mamba_train_cli_bad.json";
  write_file_atomic(cfg, std::string("{\"task\": \"parity\", \"btach\": 4}"));
  const std::vector<std::string> cases = {"train --task nope --steps 1",
                                          "train --rope sideways --steps 1",
                                          "train --batch 0 --steps 1",
                                          "train -c " + cfg,
                                          "eval --model /nonexistent/dir --task parity",
                                          "train --steps 1 --sweep /nonexistent/sweep.json",
                                          "train --steps 1 --sweep " + cfg,
                                          "train --steps 1 --runs 2 --sweep " + cfg,
                                          "train --steps 1 --runs 2 --resume /nonexistent/dir",
                                          "train --steps 1 --batch 4 --length-buckets 5",
                                          "train --steps 1 --batch 4 --length-buckets 2 --graph"};
  for (const std::string& args : cases) {
    const Result r = run(args);
    EXPECT_EQ(r.status, 1) << args << ": " << r.output;
    EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << args << ": " << r.output;
    EXPECT_EQ(count_lines(r.output), 1u) << args << ": " << r.output;
  }
  std::remove(cfg.c_str());
}

}  // namespace
}  // namespace mamba
