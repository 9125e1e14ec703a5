// Prometheus text exposition of the server's metrics (see metrics.h).
#include "server/metrics.h"

#include <cstdio>
#include <limits>
#include <sstream>

namespace mamba::server {
namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void counter(std::ostringstream& os, const char* name, const char* help, uint64_t value) {
  os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " counter\n"
     << name << ' ' << value << '\n';
}

void gauge(std::ostringstream& os, const char* name, const char* help, int64_t value) {
  os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " gauge\n" << name << ' ' << value << '\n';
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < upper_bounds_.size() && value > upper_bounds_[i]) ++i;
  std::lock_guard lock(mutex_);
  ++counts_[i];
  sum_ += value;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::lock_guard lock(mutex_);
  std::ostringstream os;
  os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    cumulative += counts_[i];
    os << name << "_bucket{le=\"" << number(upper_bounds_[i]) << "\"} " << cumulative << '\n';
  }
  cumulative += counts_.back();
  os << name << "_bucket{le=\"+Inf\"} " << cumulative << '\n';
  os << name << "_sum " << number(sum_) << '\n' << name << "_count " << count_ << '\n';
  return os.str();
}

std::string Metrics::render(const MetricGauges& g) const {
  std::ostringstream os;
  os << "# HELP mambacpp_requests_total Generation requests accepted, by endpoint.\n"
        "# TYPE mambacpp_requests_total counter\n"
     << "mambacpp_requests_total{endpoint=\"completions\"} " << requests_completions.load() << '\n'
     << "mambacpp_requests_total{endpoint=\"chat_completions\"} " << requests_chat.load() << '\n';
  counter(os, "mambacpp_requests_rejected_total", "Requests answered with an error status.",
          requests_rejected.load());
  counter(os, "mambacpp_requests_finished_total", "Generations run to their end (stop or length).",
          requests_finished.load());
  counter(os, "mambacpp_requests_cancelled_total", "Generations cancelled because the client went away.",
          requests_cancelled.load());
  counter(os, "mambacpp_prompt_tokens_total", "Prompt tokens of accepted requests.", prompt_tokens.load());
  counter(os, "mambacpp_prompt_tokens_cached_total", "Prompt tokens restored from the prefix-state cache.",
          cached_prompt_tokens.load());
  counter(os, "mambacpp_completion_tokens_total", "Tokens generated.", completion_tokens.load());
  counter(os, "mambacpp_cache_hits_total", "Requests that resumed from a cached prefix state.",
          cache_hits.load());
  counter(os, "mambacpp_cache_misses_total", "Requests with no cached prefix state.", cache_misses.load());
  gauge(os, "mambacpp_queue_depth", "Requests waiting for a slot.", g.queue_depth);
  gauge(os, "mambacpp_active_slots", "Slots prefilling or decoding a request.", g.active_slots);
  gauge(os, "mambacpp_slots", "Slots (--parallel).", g.slots);
  gauge(os, "mambacpp_cache_entries", "States held by the prefix-state cache.", g.cache_entries);
  gauge(os, "mambacpp_cache_bytes", "Bytes held by the prefix-state cache.", g.cache_bytes);
  gauge(os, "mambacpp_cache_budget_bytes", "Byte budget of the prefix-state cache (--cache-mib).",
        g.cache_budget_bytes);
  gauge(os, "mambacpp_cache_spilled_bytes",
        "Bytes of a device model's cached states moved to host memory (--cache-host-mib).",
        g.cache_spilled_bytes);
  gauge(os, "mambacpp_cache_spill_budget_bytes", "Byte budget of that host tier.",
        g.cache_spill_budget_bytes);
  os << time_to_first_token.render("mambacpp_time_to_first_token_seconds",
                                   "From request arrival to the first generated token.");
  os << inter_token.render("mambacpp_inter_token_seconds", "Between consecutive tokens of one stream.");
  return os.str();
}

}  // namespace mamba::server
