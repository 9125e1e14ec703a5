// Test helpers shared by every test executable: fixture lookup (MAMBACPP_FIXTURES, else
// ../shared/fixtures next to the checkout), random tensors, and error metrics.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mamba::testing {

// The fixtures folder, or nullopt when neither location exists (tests then GTEST_SKIP
// with a message saying so).
std::optional<std::string> fixtures_dir();

Tensor random_tensor(const Shape& shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f);
float max_abs_diff(const Tensor& a, const Tensor& b);
float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);
float rel_error(const Tensor& a, const Tensor& ref);  // ||a - ref|| / ||ref||

// Result of running a command-line program: exit status (-1 if it did not exit normally),
// stdout and stderr apart, and `output` = stdout followed by stderr.
struct CliResult {
  int status = -1;
  std::string out, err, output;
};
// Runs `binary ARGS` through the shell, feeding `input` on stdin when it is not empty.
CliResult run_cli(const std::string& binary, const std::string& args, const std::string& input = "");
// Newlines in s (the lines a command printed).
size_t count_lines(const std::string& s);
// An empty directory TempDir()/<prefix>_<pid> (removed first if it exists).
std::string fresh_temp_dir(const std::string& prefix);

}  // namespace mamba::testing

// Skips the current test when fixtures are absent; sets `dir` otherwise.
#define MAMBA_REQUIRE_FIXTURES(dir)                                   \
  std::string dir;                                                    \
  do {                                                                \
    auto mamba_fx_ = ::mamba::testing::fixtures_dir();                \
    if (!mamba_fx_)                                                   \
      GTEST_SKIP() << "fixtures not found: set MAMBACPP_FIXTURES or " \
                      "provide ../shared/fixtures";                   \
    dir = *mamba_fx_;                                                 \
  } while (0)
