// Checkpoint folders (see checkpoint.h): write into a temporary folder, rename, then point
// `latest` at it; prune the oldest.
#include "train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"

namespace mamba::train {

namespace fs = std::filesystem;

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool is_step_name(const std::string& name) {
  return name.size() == 13 && name.rfind("step_", 0) == 0 &&
         std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Removes a folder so that a kill midway never leaves a partial step_N: it is first renamed out of
// the step_* names (one atomic rename), then deleted; the next write_checkpoint sweeps leftovers.
void discard(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  const fs::path doomed = dir.string() + ".old";
  fs::remove_all(doomed, ec);
  fs::rename(dir, doomed, ec);
  fs::remove_all(ec ? dir : doomed);
}

// Removes all but the newest `keep` step_* folders (names sort by step), never `current`.
void prune(const std::string& root, int64_t keep, const std::string& current) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && is_step_name(entry.path().filename().string()))
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  const int64_t n = static_cast<int64_t>(names.size());
  for (int64_t i = 0; i + keep < n; ++i)
    if (names[i] != current) discard(fs::path(root) / names[i]);
  // Folders a killed run left half-deleted (*.old) or half-written (*.tmp, not the one in use).
  std::vector<fs::path> leftovers;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.starts_with("step_") && name.ends_with(".old"))
      leftovers.push_back(entry.path());
  }
  for (const fs::path& dir : leftovers) fs::remove_all(dir);
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string write_checkpoint(const std::string& root, int64_t step, int64_t keep,
                             const std::function<void(const std::string& dir)>& write) {
  const std::string name = checkpoint_name(step);
  const fs::path final_dir = fs::path(root) / name, tmp_dir = fs::path(root) / (name + ".tmp");
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw_error(ErrorCode::io, root, ": cannot create the checkpoint folder: ", ec.message());
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  write(tmp_dir.string());
  discard(final_dir);
  fs::rename(tmp_dir, final_dir, ec);
  if (ec)
    throw_error(ErrorCode::io, final_dir.string(), ": cannot move the checkpoint into place: ", ec.message());
  write_file_atomic(path_join(root, "latest"), name + "\n");
  prune(root, keep, name);
  return final_dir.string();
}

std::string resolve_checkpoint(const std::string& path) {
  const std::string latest = path_join(path, "latest");
  if (file_exists(latest)) {
    const std::string dir = path_join(path, trim(read_file(latest)));
    if (!file_exists(path_join(dir, "trainer.json")))
      throw_error(ErrorCode::not_found, latest, ": names '", dir, "', which holds no trainer.json");
    return dir;
  }
  if (file_exists(path_join(path, "trainer.json"))) return path;
  throw_error(ErrorCode::not_found, path,
              ": not a training checkpoint (no 'latest' file and no trainer.json)");
}

std::string resolve_model_dir(const std::string& path) {
  const std::string latest = path_join(path, "latest");
  return file_exists(latest) ? path_join(path, trim(read_file(latest))) : path;
}

}  // namespace mamba::train
