// Crash safety (issue 16): `generate --save-state` and `train` (checkpoints) are killed with SIGKILL
// at random moments, many times; every state file and checkpoint left must be either the previous
// or the new complete one (byte-identical to what an uninterrupted run writes), never torn.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/file_util.h"
#include "testing.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<std::string> split(const std::string& args) {
  std::istringstream in(args);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Starts MAMBACPP_CLI with `args` (stdout/stderr to /dev/null) and returns its pid.
pid_t spawn(const std::string& args) {
  std::vector<std::string> words = split(args);
  words.insert(words.begin(), MAMBACPP_CLI);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Runs to completion; returns the exit status and the wall time in seconds.
std::pair<int, double> run_to_end(const std::string& args) {
  const auto t0 = Clock::now();
  int status = 0;
  ::waitpid(spawn(args), &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          std::chrono::duration<double>(Clock::now() - t0).count()};
}

// Starts the command, SIGKILLs it after `delay` seconds; true when the kill interrupted it.
bool run_and_kill(const std::string& args, double delay) {
  const pid_t pid = spawn(args);
  std::this_thread::sleep_for(std::chrono::duration<double>(delay));
  const bool running = ::kill(pid, SIGKILL) == 0;
  int status = 0;
  ::waitpid(pid, &status, 0);
  return running && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

int kill_count() {
  const char* env = std::getenv("MAMBACPP_CRASH_KILLS");
  return env ? std::max(1, std::atoi(env)) : 60;
}

TEST(CrashSafety, GenerateSaveStateIsPreviousOrNew) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = testing::fresh_temp_dir("crash_generate");
  const std::string model = path_join(root, "ssm-hybrid"), state = dir + "/s.mstate";
  const std::string base = "generate -m " + model + " --temp 0 --ignore-eos --print-ids -t 1 ";
  // previous: after a prompt; new: that state continued by 24 tokens and saved over the same file.
  ASSERT_EQ(run_to_end(base + "--prompt-ids 1,2,3,4,5 -n 2 --save-state " + state).first, 0);
  const std::string previous = read_file(state);
  const std::string resume = base + "--load-state " + state + " -n 24 --save-state " + state;
  // Its run time, the fastest of three (a loaded machine stretches single runs), sets the kill window.
  double seconds = 1e9;
  for (int i = 0; i < 3; ++i) {
    write_file_atomic(state, previous);
    const auto [status, t] = run_to_end(resume);
    ASSERT_EQ(status, 0);
    seconds = std::min(seconds, t);
  }
  const std::string next = read_file(state);
  ASSERT_NE(previous, next);
  // The new file loads (a one-token continuation from it succeeds).
  ASSERT_EQ(run_to_end(base + "--load-state " + state + " -n 1").first, 0);

  std::mt19937 rng(16);
  std::uniform_real_distribution<double> when(0.0, seconds * 1.2);
  int killed = 0, torn = 0, kept_previous = 0, got_new = 0;
  const int n = kill_count();
  for (int i = 0; i < n; ++i) {
    write_file_atomic(state, previous);
    killed += run_and_kill(resume, when(rng));
    const std::string left = read_file(state);
    if (left == previous)
      ++kept_previous;
    else if (left == next)
      ++got_new;
    else
      ++torn;
  }
  std::printf(
      "generate --save-state: %d runs, %d killed mid-run, %d left the previous file, %d the new, %d torn\n",
      n, killed, kept_previous, got_new, torn);
  EXPECT_EQ(torn, 0);
  EXPECT_GE(killed, n / 4) << "too few kills landed while the command ran";
  fs::remove_all(dir);
}

// The files of a complete checkpoint folder, by name (trainer.json's bytes hold the run's
// configuration, so only the weights and optimizer state are compared byte for byte).
std::map<std::string, std::string> checkpoint_files(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const char* name : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer.json"})
    if (file_exists((dir / name).string())) out[name] = read_file((dir / name).string());
  return out;
}

TEST(CrashSafety, TrainCheckpointsArePreviousOrNew) {
  const std::string dir = testing::fresh_temp_dir("crash_train");
  const std::string tiny =
      "train --task parity --layer Mamba2 --d-model 16 --headdim 16 --d-state 16 --batch 4 --length 6 "
      "--eval-batches 1 -t 1 --steps 12 --checkpoint-every 1 --checkpoint-dir ";
  // Reference: every step's checkpoint from one uninterrupted run.
  const auto [status, seconds] = run_to_end(tiny + dir + "/ref --keep-checkpoints 100");
  ASSERT_EQ(status, 0);
  std::map<std::string, std::map<std::string, std::string>> reference;
  for (const auto& e : fs::directory_iterator(dir + "/ref"))
    if (e.is_directory()) reference[e.path().filename().string()] = checkpoint_files(e.path());
  ASSERT_EQ(reference.size(), 12u);

  std::mt19937 rng(16);
  std::uniform_real_distribution<double> when(0.0, seconds * 1.1);
  int killed = 0, torn = 0, checked = 0;
  const int n = kill_count();
  const std::string ckpt = dir + "/run";
  for (int i = 0; i < n; ++i) {
    // Half the runs start fresh, half resume the folder the previous kill left.
    if (i % 2 == 0) fs::remove_all(ckpt);
    const bool resume = fs::exists(ckpt + "/latest");
    killed += run_and_kill(
        resume ? "train --resume " + ckpt + " --steps 12 -t 1" : tiny + ckpt + " --keep-checkpoints 2",
        when(rng));
    if (!fs::exists(ckpt)) continue;
    for (const auto& e : fs::directory_iterator(ckpt)) {
      const std::string name = e.path().filename().string();
      if (!e.is_directory() || name.size() != 13) continue;  // step_N.tmp / .old: never read
      ++checked;
      const auto found = checkpoint_files(e.path());
      const auto& want = reference.at(name);
      bool ok = found.size() == want.size();
      for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors"})
        ok = ok && found.count(f) && found.at(f) == want.at(f);
      ok = ok && found.count("trainer.json") &&
           found.at("trainer.json").find("\"step\": " + std::to_string(std::stoi(name.substr(5)))) !=
               std::string::npos;
      if (!ok) {
        ++torn;
        ADD_FAILURE() << "torn checkpoint " << e.path();
      }
    }
    if (fs::exists(ckpt + "/latest")) {
      const std::string latest = read_file(ckpt + "/latest");
      if (!fs::exists(ckpt + "/" + latest.substr(0, latest.find('\n')) + "/trainer.json")) {
        ++torn;
        ADD_FAILURE() << "latest names a missing checkpoint: " << latest;
      }
    }
  }
  // Whatever the last kill left resumes to the end.
  if (fs::exists(ckpt + "/latest")) {
    EXPECT_EQ(run_to_end("train --resume " + ckpt + " --steps 12 -t 1").first, 0);
  }
  std::printf("train checkpoints: %d runs, %d killed mid-run, %d checkpoint folders checked, %d torn\n", n,
              killed, checked, torn);
  EXPECT_EQ(torn, 0);
  EXPECT_GE(killed, n / 4) << "too few kills landed while the command ran";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mamba
