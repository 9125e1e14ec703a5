// Server metrics in the Prometheus text format (GET /metrics): counters of requests and tokens,
// gauges read at render time (queue depth, active slots, prefix cache), and histograms of the
// time to first token and of the time between tokens. Thread-safe: HTTP threads and the
// scheduler thread update them concurrently.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace mamba::server {

// Cumulative histogram with fixed upper bounds (seconds), as Prometheus expects.
class Histogram {
public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // `name`_bucket{le=...}, `name`_sum and `name`_count lines, after # HELP and # TYPE.
  std::string render(const std::string& name, const std::string& help) const;

private:
  std::vector<double> upper_bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last one is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Values the scheduler and cache own, sampled when /metrics is rendered.
struct MetricGauges {
  int64_t queue_depth = 0, active_slots = 0, slots = 0;
  int64_t cache_entries = 0, cache_bytes = 0, cache_budget_bytes = 0;
  int64_t cache_spilled_bytes = 0, cache_spill_budget_bytes = 0;  // host tier of a device model's cache
};

struct Metrics {
  std::atomic<uint64_t> requests_completions{0}, requests_chat{0};
  std::atomic<uint64_t> requests_rejected{0};   // 4xx / 5xx answers of any endpoint
  std::atomic<uint64_t> requests_finished{0};   // generations run to their end
  std::atomic<uint64_t> requests_cancelled{0};  // client gone before the end
  std::atomic<uint64_t> prompt_tokens{0}, cached_prompt_tokens{0}, completion_tokens{0};
  std::atomic<uint64_t> cache_hits{0}, cache_misses{0};
  Histogram time_to_first_token{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  Histogram inter_token{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};

  std::string render(const MetricGauges& gauges) const;
};

}  // namespace mamba::server
