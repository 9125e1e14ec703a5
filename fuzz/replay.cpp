// Regression replay (runs in every build, g++ included): feeds each file under
// fuzz/regressions/<surface>/ to that surface's entry (entries.h) and checks the outcome: a clean
// refusal (mamba::Error) by default, acceptance for files whose name ends in ".ok". A crash, a
// sanitizer report, another exception or the wrong outcome fails the test.
//   mambacpp_fuzz_replay DIR                 every DIR/<surface>/* file
//   mambacpp_fuzz_replay --any DIR           seed corpora: any clean outcome
//   mambacpp_fuzz_replay --write-state-seeds DIR
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "entries.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "--write-state-seeds") {
    mamba::fuzz::write_state_seeds(args[1]);
    return 0;
  }
  const bool any = !args.empty() && args[0] == "--any";
  if (any) args.erase(args.begin());
  if (args.size() != 1) {
    std::fprintf(stderr, "usage: mambacpp_fuzz_replay [--any] DIR | --write-state-seeds DIR\n");
    return 2;
  }
  if (!fs::is_directory(args[0])) {
    std::fprintf(stderr, "mambacpp_fuzz_replay: %s is not a directory\n", args[0].c_str());
    return 2;
  }
  mamba::fuzz::init();
  int files = 0, failures = 0;
  std::vector<fs::path> surfaces;
  for (const auto& e : fs::directory_iterator(args[0]))
    if (e.is_directory()) surfaces.push_back(e.path());
  std::sort(surfaces.begin(), surfaces.end());
  for (const fs::path& dir : surfaces) {
    const std::string surface = dir.filename().string();
    const mamba::fuzz::Entry entry = mamba::fuzz::find_entry(surface);
    if (!entry) {
      std::fprintf(stderr, "%s: no fuzz surface named '%s'\n", dir.c_str(), surface.c_str());
      ++failures;
      continue;
    }
    std::vector<fs::path> inputs;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename() != "README.md") inputs.push_back(e.path());
    std::sort(inputs.begin(), inputs.end());
    int accepted = 0;
    for (const fs::path& input : inputs) {
      const std::string bytes = mamba::read_file(input.string());
      const bool want_ok = input.filename().string().ends_with(".ok");
      ++files;
      try {
        const bool ok = entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
        accepted += ok;
        if (!any && ok != want_ok) {
          std::fprintf(stderr, "%s: %s, expected %s\n", input.c_str(), ok ? "accepted" : "refused",
                       want_ok ? "acceptance" : "a clean refusal");
          ++failures;
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: unexpected exception: %.200s\n", input.c_str(), e.what());
        ++failures;
      }
    }
    std::printf("%-15s %3zu inputs: %d accepted, %zu refused cleanly\n", surface.c_str(), inputs.size(),
                accepted, inputs.size() - static_cast<size_t>(accepted));
  }
  std::printf("replayed %d inputs from %zu surfaces: %d failures\n", files, surfaces.size(), failures);
  return failures == 0 && files > 0 ? 0 : 1;
}
