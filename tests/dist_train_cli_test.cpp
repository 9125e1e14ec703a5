// Data-parallel training through the command, on CPU ranks (processes over the socket
// backend): the loss curve of 2 and 4 ranks, with and without ZeRO-1, equals one process's at the
// same global batch; a checkpoint written by 4 ranks continues the same curve on 2 ranks and on 1;
// mpirun's environment makes ranks too; a rank that dies stops the run with a line naming it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/file_util.h"
#include "testing.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

testing::CliResult run(const std::string& args) {
  return testing::run_cli(MAMBACPP_CLI, args);
}

struct Row {
  double loss = 0, grad_norm = 0;
};

// step -> (loss, grad_norm) of a training CSV log.
std::vector<Row> read_log(const std::string& path) {
  std::istringstream in(read_file(path));
  std::string line;
  std::getline(in, line);  // header
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    rows.push_back({std::stod(f.at(2)), std::stod(f.at(5))});
  }
  return rows;
}

// The log rows [from, to) of `b` against `a`: loss to 1e-5 (the log prints 6 decimals), the
// gradient norm (printed with 4 significant digits) to its printed precision.
void expect_same_curve(const std::vector<Row>& a, const std::vector<Row>& b, size_t from, size_t to,
                       const std::string& what) {
  ASSERT_GE(a.size(), to) << what;
  ASSERT_GE(b.size(), to) << what;
  for (size_t i = from; i < to; ++i) {
    EXPECT_NEAR(a[i].loss, b[i].loss, 1e-5) << what << ", step " << i + 1;
    EXPECT_NEAR(a[i].grad_norm, b[i].grad_norm, 1e-3 * a[i].grad_norm) << what << ", step " << i + 1;
  }
}

// Variable lengths with an answer at every position (the ranks' answer counts differ: equal
// weights per rank would fail here), clipping that binds and weight decay: every part of the
// step the split could change.
const std::string tiny =
    "--task group --group-order 5 --min-length 2 --max-length 16 --layer Mamba2 --d-model 16 "
    "--headdim 16 --d-state 16 --batch 8 --lr 1e-2 --schedule constant --clip 0.5 --weight-decay 0.1 "
    "--eval-batches 1 -t 1";

TEST(DistTrainCli, RanksFollowTheOneProcessLossCurve) {
  const std::string dir = testing::fresh_temp_dir("mamba_dist_curve");
  testing::CliResult r = run("train " + tiny + " --steps 30 --log " + dir + "/one.csv");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::vector<Row> one = read_log(dir + "/one.csv");
  ASSERT_EQ(one.size(), 30u);
  EXPECT_LT(one.back().loss, one.front().loss - 0.3);  // it learns: the curve is not flat
  for (const std::string ranks : {"2", "4"})
    for (const std::string zero : {"", " --zero1"}) {
      const std::string log = dir + "/r" + ranks + (zero.empty() ? "" : "z") + ".csv";
      r = run("train " + tiny + " --steps 30 --procs " + ranks + zero + " --log " + log);
      ASSERT_EQ(r.status, 0) << r.output;
      EXPECT_NE(r.err.find("x " + ranks + " ranks (socket" + (zero.empty() ? ")" : ", ZeRO-1)")),
                std::string::npos)
          << r.err;
      expect_same_curve(one, read_log(log), 0, 30, ranks + " ranks" + zero);
    }
  fs::remove_all(dir);
}

TEST(DistTrainCli, AFourRankCheckpointResumesOnTwoRanksAndOne) {
  const std::string dir = testing::fresh_temp_dir("mamba_dist_resume");
  testing::CliResult r = run("train " + tiny + " --steps 20 --log " + dir + "/one.csv");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::vector<Row> one = read_log(dir + "/one.csv");
  r = run("train " + tiny + " --steps 10 --procs 4 --zero1 --checkpoint-dir " + dir + "/ck --log " + dir +
          "/four.csv");
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(file_exists(dir + "/ck/step_00000010/optimizer.safetensors"));
  fs::copy(dir + "/ck", dir + "/ck1", fs::copy_options::recursive);
  fs::copy_file(dir + "/four.csv", dir + "/four1.csv");
  expect_same_curve(one, read_log(dir + "/four.csv"), 0, 10, "4 ranks, ZeRO-1");
  r = run("train --resume " + dir + "/ck --steps 20 --procs 2 -t 1 --log " + dir + "/four.csv");
  ASSERT_EQ(r.status, 0) << r.output;
  expect_same_curve(one, read_log(dir + "/four.csv"), 10, 20, "resumed on 2 ranks");
  r = run("train --resume " + dir + "/ck1 --steps 20 -t 1 --log " + dir + "/four1.csv");
  ASSERT_EQ(r.status, 0) << r.output;
  expect_same_curve(one, read_log(dir + "/four1.csv"), 10, 20, "resumed on 1 process");
  fs::remove_all(dir);
}

TEST(DistTrainCli, MpirunEnvironmentMakesRanks) {
  const std::string dir = testing::fresh_temp_dir("mamba_dist_mpi");
  testing::CliResult r = run("train " + tiny + " --steps 8 --log " + dir + "/one.csv");
  ASSERT_EQ(r.status, 0) << r.output;
  // What `mpirun -np 2` sets, and a port of our own (sh runs rank 1 in the background).
  const std::string port = std::to_string(20000 + ::getpid() % 20000);
  const std::string env = "OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_LOCAL_RANK=0 MASTER_PORT=" + port;
  const std::string cmd = "train " + tiny + " --steps 8";
  r = testing::run_cli("sh -c", "'OMPI_COMM_WORLD_RANK=1 " + env + " " + MAMBACPP_CLI + " " + cmd +
                                    " & OMPI_COMM_WORLD_RANK=0 " + env + " " + MAMBACPP_CLI + " " + cmd +
                                    " --log " + dir + "/mpi.csv; wait'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.err.find("x 2 ranks (socket)"), std::string::npos) << r.err;
  expect_same_curve(read_log(dir + "/one.csv"), read_log(dir + "/mpi.csv"), 0, 8, "mpirun environment");
  fs::remove_all(dir);
}

TEST(DistTrainCli, BadSplitsAreOneErrorLine) {
  testing::CliResult r = run("train " + tiny + " --steps 2 --procs 3");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "error: train: the global batch 8 is not divisible by 3 ranks (--batch must be a multiple of "
            "the rank count)\n");
  r = run("train " + tiny + " --steps 2 --procs 2 --gpus 4");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--gpus 4 and --procs 2 disagree"), std::string::npos) << r.err;
  // Without a CUDA device, --gpus fails once in the launcher (a CUDA machine would start the ranks).
  if (testing::run_cli(MAMBACPP_CLI, "train " + tiny + " --steps 1 --device cuda").status != 0) {
    r = run("train " + tiny + " --steps 2 --gpus 2 --device cuda");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(testing::count_lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find("--device cuda: "), std::string::npos) << r.err;
  }
}

// The launcher with its stderr in a file, one rank killed (SIGKILL) once training runs.
TEST(DistTrainCli, ADeadRankStopsTheRunNamingIt) {
  const std::string dir = testing::fresh_temp_dir("mamba_dist_kill");
  const std::string err = dir + "/err.txt";
  const pid_t launcher = ::fork();
  if (launcher == 0) {
    std::freopen(err.c_str(), "w", stderr);
    std::freopen("/dev/null", "w", stdout);
    std::vector<std::string> args = {MAMBACPP_CLI, "train",   "--procs", "2",
                                     "--steps",    "1000000", "--log",   dir + "/log.csv"};
    std::istringstream in(tiny);
    for (std::string a; in >> a;) args.push_back(a);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(MAMBACPP_CLI, argv.data());
    ::_exit(127);
  }
  // The launcher's children, once rank 2 has run a few steps (the log has rows).
  std::string victim, rank;
  for (int i = 0; i < 600 && rank.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::string kids =
        "/proc/" + std::to_string(launcher) + "/task/" + std::to_string(launcher) + "/children";
    if (!file_exists(kids) || !file_exists(dir + "/log.csv") ||
        testing::count_lines(read_file(dir + "/log.csv")) < 3)
      continue;
    std::istringstream ids(read_file(kids));
    std::vector<std::string> pids;
    for (std::string p; ids >> p;) pids.push_back(p);
    if (pids.size() != 2) continue;
    victim = pids[1];
    const std::string environ = read_file("/proc/" + victim + "/environ");
    const size_t at = environ.find("MAMBACPP_RANK=");
    if (at != std::string::npos) rank = environ.substr(at + 14, environ.find('\0', at) - at - 14);
  }
  ASSERT_FALSE(rank.empty()) << "the ranks did not start";
  ::kill(std::stoi(victim), SIGKILL);
  int status = 0;
  ::waitpid(launcher, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string text = read_file(err);
  EXPECT_NE(
      text.find("error: train: rank " + rank + " of 2 was killed by signal 9; the other ranks were stopped"),
      std::string::npos)
      << text;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mamba
