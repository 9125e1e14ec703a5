// Flag checks done before any work starts: numeric ranges (CLI11 validators whose message names
// the allowed range and the value; CLI11 prefixes the flag), output files' folders, --dtype
// against --device, and the misspelt-flag suggestion of usage errors.
#pragma once
#include <mambacpp/mambacpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace mambacpp::cli {

inline constexpr int64_t kMaxThreads = 4096;

namespace detail {
// Bounds at or beyond int32's are not named (they only keep the value in the flag's type).
inline std::string int_range_text(int64_t lo, int64_t hi) {
  const bool no_lo = lo <= std::numeric_limits<int32_t>::min(),
             no_hi = hi >= std::numeric_limits<int32_t>::max();
  if (no_lo && no_hi) return "an integer";
  if (no_lo) return "an integer <= " + std::to_string(hi);
  if (no_hi) return "an integer >= " + std::to_string(lo);
  return "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
}
inline std::string real_text(double v) {
  std::string s = std::to_string(v);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}
}  // namespace detail

// An integer flag in [lo, hi]: "--threads: expected an integer from 1 to 4096, found 0".
inline CLI::Validator int_range(int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max()) {
  const std::string expected = detail::int_range_text(lo, hi);
  return CLI::Validator(
      [lo, hi, expected](std::string& s) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno != 0 || v < lo || v > hi)
          return "expected " + expected + ", found '" + s + "'";
        return {};
      },
      expected.substr(std::min<size_t>(expected.size(), 11)));
}

// A real flag in [lo, hi] (an open end excludes its bound); finite always.
inline CLI::Validator real_range(double lo, double hi, bool lo_open = false, bool hi_open = false) {
  std::string expected = "a number";
  const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  if (has_lo && has_hi)
    expected += std::string(" in ") + (lo_open ? "(" : "[") + detail::real_text(lo) + ", " +
                detail::real_text(hi) + (hi_open ? ")" : "]");
  else if (has_lo)
    expected += (lo_open ? " > " : " >= ") + detail::real_text(lo);
  else if (has_hi)
    expected += (hi_open ? " < " : " <= ") + detail::real_text(hi);
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(s.c_str(), &end);
        const bool ok = !s.empty() && *end == '\0' && errno == 0 && std::isfinite(v) &&
                        (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
        return ok ? std::string() : "expected " + expected + ", found '" + s + "'";
      },
      expected.substr(std::min<size_t>(expected.size(), 9)));
}
inline CLI::Validator any_real() {
  const double inf = std::numeric_limits<double>::infinity();
  return real_range(-inf, inf);
}

// --device: cpu or cuda.
inline CLI::Option* add_device_option(CLI::App& app, std::string& device, const std::string& help) {
  return app.add_option("--device", device, help)->check(CLI::IsMember({"cpu", "cuda"}));
}

// --kernel NAME=VALUE (repeatable): pins one of the kernel plan's choices (ops/exec.h's KernelPlan;
// timing comparisons, a fallback on a device where a fast path misbehaves). The one place the CLI
// turns into a plan: nothing below apps/ reads the environment.
inline CLI::Option* add_kernel_option(CLI::App& app, std::vector<std::string>& kernels) {
  return app.add_option(
      "--kernel", kernels,
      "pin a kernel choice, repeatable: ssd_bwd=auto|gemm|exact, mamba3_bwd=auto|gemm|exact, "
      "decode_gemv=auto|cublas, gemv_split=auto|11|21|12|14, mamba3_step=auto|fused|stream, "
      "dependent_launch=on|off, fuse_decode=on|off");
}

// The plan of --kernel's assignments (each checked: a bad name or value is a usage error).
inline KernelPlan kernel_plan(const std::vector<std::string>& kernels) {
  KernelPlan plan;
  for (const std::string& k : kernels) plan.set(k);
  return plan;
}

// -t/--threads: 1..kMaxThreads when given (not given: all cores).
inline CLI::Option* add_threads_option(CLI::App& app, int& threads) {
  return app.add_option("-t,--threads", threads, "CPU threads (default: all cores)")
      ->check(int_range(1, kMaxThreads));
}

// --mmap: a GGUF's weights used from the file's mapping (shared pages, nothing read before first
// use) instead of read into 2 MiB pages (LoadOptions::gguf_mapped).
inline CLI::Option* add_mmap_flag(CLI::App& app, bool& mmap) {
  return app.add_flag("--mmap", mmap,
                      "a .gguf's weights from the file's mapping (shared between processes) instead of read "
                      "into 2 MiB pages (faster decode)");
}

// An output file: its folder must exist (and the path must not be a folder), checked before work.
inline void check_output_path(const std::string& flag, const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  const fs::path p(path);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw_error(ErrorCode::not_found, flag, " ", path, ": folder ", dir.string(), " does not exist");
  if (fs::is_directory(p, ec))
    throw_error(ErrorCode::invalid_argument, flag, " ", path, ": is a folder, expected a file path");
}

// --dtype bf16/f16 computes on CUDA only.
inline void check_dtype_device(const std::string& dtype, const std::string& device) {
  if (dtype != "f32" && device != "cuda")
    throw_error(ErrorCode::invalid_argument, "--dtype ", dtype,
                " runs on CUDA only: add --device cuda (on the CPU weights are f32)");
}

// The closest of `names` to `word` within a few edits, or "".
inline std::string closest_name(const std::string& word, const std::vector<std::string>& names) {
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const std::string& n : names) {
    std::vector<size_t> row(n.size() + 1);
    for (size_t j = 0; j <= n.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= n.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (word[i - 1] == n[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    if (row[n.size()] < best_d) {
      best_d = row[n.size()];
      best = n;
    }
  }
  return best;
}

// Every flag name of `app` ("--model", "-m", ...).
inline std::vector<std::string> flag_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* o : app.get_options()) {
    for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
    for (const std::string& s : o->get_snames()) names.push_back("-" + s);
  }
  return names;
}

}  // namespace mambacpp::cli
