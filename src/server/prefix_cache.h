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
// States live where the model runs (device memory on CUDA) under `budget_bytes`. With a spill
// budget, an entry that leaves that budget moves to host memory instead of being dropped (the
// server gives one to device models: a GPU's budget holds a few large states, the host many more),
// and a hit there is copied back to its device. Not thread-safe: the scheduler thread owns it
// (device copies run on the Exec bound to it); the counters are atomics so /metrics may read them.
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
  explicit PrefixCache(int64_t budget_bytes, int64_t spill_budget_bytes = 0)
      : budget_bytes_(budget_bytes), spill_budget_bytes_(spill_budget_bytes) {}

  // The state after the longest stored key that is a prefix of `tokens` (the whole of `tokens`
  // included), copied; nullopt when none is.
  std::optional<CacheHit> lookup(std::span<const int32_t> tokens);
  // Stores a copy of `state` as the state after `tokens`. An entry already stored under the same
  // tokens is only marked as used; one larger than both budgets is not stored.
  void insert(std::span<const int32_t> tokens, const runtime::SessionState& state);
  void clear();
  // With deferred eviction, insert() only adds; trim() then moves (or drops) what is over the
  // budget — the server trims when idle, so spilling a device state to host memory (a copy the
  // GPU must finish) is never on a request's way to its first token.
  void defer_eviction(bool on) { defer_ = on; }
  void trim() { evict_to(budget_bytes_); }

  int64_t budget_bytes() const { return budget_bytes_; }
  int64_t bytes() const { return bytes_.load(); }      // where the model runs
  int64_t entries() const { return entries_.load(); }  // both tiers
  int64_t spill_budget_bytes() const { return spill_budget_bytes_; }
  int64_t spilled_bytes() const { return spilled_bytes_.load(); }

private:
  struct Entry {
    std::vector<int32_t> tokens;
    uint64_t hash = 0;
    runtime::SessionState state;
    int64_t bytes = 0;
    Device home = Device::cpu;  // where the model runs: a spilled entry's hits are copied back there
    bool spilled = false;       // in spilled_ (host memory), not lru_
  };
  using Lru = std::list<Entry>;  // most recently used first

  void evict_to(int64_t budget);
  void drop(Lru& list, Lru::iterator victim);

  int64_t budget_bytes_, spill_budget_bytes_;
  bool defer_ = false;
  Lru lru_, spilled_;  // an entry moves between them by splice: its iterator stays valid
  std::unordered_multimap<uint64_t, Lru::iterator> by_hash_;
  std::atomic<int64_t> bytes_{0}, entries_{0}, spilled_bytes_{0};
};

}  // namespace mamba::server
