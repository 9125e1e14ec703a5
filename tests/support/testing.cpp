// Test helpers (see testing.h).
#include "testing.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::testing {

std::optional<std::string> fixtures_dir() {
  if (const char* env = std::getenv("MAMBACPP_FIXTURES"); env && *env) {
    if (file_exists(env)) return std::string(env);
  }
  const std::string fallback = std::string(MAMBACPP_SOURCE_DIR) + "/../shared/fixtures";
  if (file_exists(fallback)) return fallback;
  return std::nullopt;
}

Tensor random_tensor(const Shape& shape, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  MAMBA_CHECK(a.size() == b.size(), "sizes " << a.size() << " vs " << b.size());
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  MAMBA_CHECK(a.shape() == b.shape(), shape_str(a.shape()) << " vs " << shape_str(b.shape()));
  return max_abs_diff(a.to_vector(), b.to_vector());
}

float rel_error(const Tensor& a, const Tensor& ref) {
  const auto va = a.to_vector(), vr = ref.to_vector();
  MAMBA_CHECK(va.size() == vr.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    num += (double(va[i]) - vr[i]) * (double(va[i]) - vr[i]);
    den += double(vr[i]) * vr[i];
  }
  return static_cast<float>(std::sqrt(num / (den > 0 ? den : 1)));
}

size_t count_lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

std::string fresh_temp_dir(const std::string& prefix) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / (prefix + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

CliResult run_cli(const std::string& binary, const std::string& args, const std::string& input) {
  static std::atomic<int> counter{0};
  const std::string tmp = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                          "/mambacpp_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  std::string cmd = binary + " " + args + " 2>" + tmp + ".err";
  if (!input.empty()) {
    write_file_atomic(tmp + ".in", input);
    cmd += " <" + tmp + ".in";
  }
  CliResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = file_exists(tmp + ".err") ? read_file(tmp + ".err") : "";
  r.output = r.out + r.err;
  std::remove((tmp + ".err").c_str());
  std::remove((tmp + ".in").c_str());
  return r;
}

}  // namespace mamba::testing
