// Per-op device time (ops/exec.h's OpScope): a pair of CUDA events on the bound context's stream
// around each outermost op, folded into per-name totals when the pending pairs pile up or a
// report is asked for. Work queued inside a graph capture is not timed (events cannot be read
// there), so profiles are of eager runs.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace mamba::cuda {

namespace {

struct Pending {
  std::string name;
  cudaEvent_t start, stop;
};

struct Total {
  int64_t calls = 0;
  double ms = 0.0;
};

struct Profile {
  std::vector<Pending> pending;
  std::vector<cudaEvent_t> free_events;
  std::map<std::string, Total> totals;
};

Profile& profile() {
  static Profile p;
  return p;
}

cudaEvent_t take_event(Profile& p) {
  if (!p.free_events.empty()) {
    cudaEvent_t e = p.free_events.back();
    p.free_events.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void fold(Profile& p) {
  if (p.pending.empty()) return;
  CUDA_CHECK(cudaEventSynchronize(p.pending.back().stop));
  for (Pending& m : p.pending) {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, m.start, m.stop));
    Total& t = p.totals[m.name];
    ++t.calls;
    t.ms += ms;
    p.free_events.push_back(m.start);
    p.free_events.push_back(m.stop);
  }
  p.pending.clear();
}

}  // namespace

void* op_timer_start() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream(), &status));
  if (status != cudaStreamCaptureStatusNone) return nullptr;
  Profile& p = profile();
  cudaEvent_t e = take_event(p);
  CUDA_CHECK(cudaEventRecord(e, stream()));
  return e;
}

void op_timer_stop(void* start, std::string name) {
  if (!start) return;
  Profile& p = profile();
  cudaEvent_t e = take_event(p);
  CUDA_CHECK(cudaEventRecord(e, stream()));
  p.pending.push_back({std::move(name), static_cast<cudaEvent_t>(start), e});
  if (p.pending.size() >= 4096) fold(p);
}

std::string op_profile_report() {
  Profile& p = profile();
  fold(p);
  std::vector<std::pair<std::string, Total>> rows(p.totals.begin(), p.totals.end());
  if (rows.empty()) return "";
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double all = 0.0;  // outermost ops only (a nested one is also inside its outer op's time)
  for (const auto& r : rows)
    if (r.first.find(" > ") == std::string::npos) all += r.second.ms;
  std::string out =
      "| op (device time, eager) | calls | total ms | mean us | share |\n|---|---:|---:|---:|---:|\n";
  char line[512];
  for (const auto& [name, t] : rows) {
    std::snprintf(line, sizeof line, "| %s | %lld | %.3f | %.2f | %.1f%% |\n", name.c_str(),
                  static_cast<long long>(t.calls), t.ms, 1000.0 * t.ms / static_cast<double>(t.calls),
                  all > 0 ? 100.0 * t.ms / all : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "| all timed ops | | %.3f | | |\n", all);
  out += line;
  return out;
}

void op_profile_reset() {
  Profile& p = profile();
  fold(p);
  p.totals.clear();
}

}  // namespace mamba::cuda
