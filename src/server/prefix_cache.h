// Prefix-state cache: the full state of a sequence (every layer's SSM and conv state, an
// attention layer's KV cache, the logits after the last token and the sampler's history window)
// stored under the tokens that produced it. A new request resumes from the longest stored
// sequence that is a prefix of its prompt and prefills only the rest. Least recently used entries
// go first when the bytes held exceed the budget. A Mamba state does not grow with the sequence,
// so one entry costs the same at 100 tokens as at 100K (plus 4 bytes per key token).
//
//   PrefixCache cache(256 << 20);
//   cache.insert(prompt, session.session_state());      // copies the state
//   if (auto hit = cache.lookup(next_prompt)) { session.session_state() = std::move(hit->state); ... }
//
// States live where the model runs (device memory on CUDA). Not thread-safe: the scheduler
// thread owns it; the counters are atomics so /metrics may read them.
#pragma once
#include <atomic>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "runtime/state_io.h"

namespace mamba::server {

struct CacheHit {
  runtime::SessionState state;  // an independent copy
  int64_t n_tokens = 0;         // prompt tokens it covers
};

class PrefixCache {
public:
  explicit PrefixCache(int64_t budget_bytes) : budget_bytes_(budget_bytes) {}

  // The state after the longest stored key that is a prefix of `tokens` (the whole of `tokens`
  // included), copied; nullopt when none is.
  std::optional<CacheHit> lookup(std::span<const int32_t> tokens);
  // Stores a copy of `state` as the state after `tokens`. An entry already stored under the same
  // tokens is only marked as used; one larger than the whole budget is not stored.
  void insert(std::span<const int32_t> tokens, const runtime::SessionState& state);
  void clear();

  int64_t budget_bytes() const { return budget_bytes_; }
  int64_t bytes() const { return bytes_.load(); }
  int64_t entries() const { return entries_.load(); }

private:
  struct Entry {
    std::vector<int32_t> tokens;
    uint64_t hash = 0;
    runtime::SessionState state;
    int64_t bytes = 0;
  };
  using Lru = std::list<Entry>;  // most recently used first

  void evict_to(int64_t budget);

  int64_t budget_bytes_;
  Lru lru_;
  std::unordered_multimap<uint64_t, Lru::iterator> by_hash_;
  std::atomic<int64_t> bytes_{0}, entries_{0};
};

}  // namespace mamba::server
