// Prefix-state cache (see prefix_cache.h). Keys are found by a polynomial hash of every prefix
// of the new prompt, longest first, and confirmed token by token.
#include "server/prefix_cache.h"

#include <algorithm>

namespace mamba::server {
namespace {

constexpr uint64_t kHashBase = 0x100000001b3ull;

uint64_t extend(uint64_t hash, int32_t token) {
  return (hash ^ (static_cast<uint64_t>(static_cast<uint32_t>(token)) + 0x9e3779b97f4a7c15ull)) * kHashBase;
}

uint64_t hash_of(std::span<const int32_t> tokens) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t t : tokens) h = extend(h, t);
  return h;
}

int64_t bytes_of(const runtime::SessionState& s, size_t n_tokens) {
  const int64_t logits = s.logits.defined() ? static_cast<int64_t>(s.logits.nbytes()) : 0;
  return s.state.bytes() + logits + static_cast<int64_t>((s.tokens.size() + n_tokens) * sizeof(int32_t));
}

runtime::SessionState copy_of(const runtime::SessionState& s) {
  runtime::SessionState c;
  c.state = s.state.copy();
  if (s.logits.defined()) c.logits = s.logits.copy();
  c.tokens = s.tokens;
  return c;
}

// The state's tensors moved to `device` (copies; the logits stay where they are: on the host).
void move_state(runtime::SessionState& s, Device device) {
  for (models::LayerState& layer : s.state.layers)
    layer.visit([&](const char*, Tensor& t) { t = t.to(device); });
}

Device home_of(const runtime::SessionState& s) {
  Device d = Device::cpu;
  for (const models::LayerState& layer : s.state.layers) {
    models::LayerState shallow = layer;  // visit() needs a mutable object
    shallow.visit([&](const char*, Tensor& t) {
      if (t.defined() && t.device() != Device::cpu) d = t.device();
    });
  }
  return d;
}

}  // namespace

std::optional<CacheHit> PrefixCache::lookup(std::span<const int32_t> tokens) {
  if (lru_.empty() && spilled_.empty()) return std::nullopt;
  std::vector<uint64_t> prefix_hash(tokens.size() + 1);
  prefix_hash[0] = hash_of({});
  for (size_t i = 0; i < tokens.size(); ++i) prefix_hash[i + 1] = extend(prefix_hash[i], tokens[i]);
  for (size_t n = tokens.size(); n > 0; --n) {
    auto [first, last] = by_hash_.equal_range(prefix_hash[n]);
    for (auto it = first; it != last; ++it) {
      Entry& e = *it->second;
      if (e.tokens.size() != n || !std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin())) continue;
      Lru& list = e.spilled ? spilled_ : lru_;
      list.splice(list.begin(), list, it->second);
      CacheHit hit{copy_of(e.state), static_cast<int64_t>(n)};
      if (e.spilled) move_state(hit.state, e.home);
      return hit;
    }
  }
  return std::nullopt;
}

void PrefixCache::insert(std::span<const int32_t> tokens, const runtime::SessionState& state) {
  if (tokens.empty() || !state.logits.defined()) return;
  const uint64_t h = hash_of(tokens);
  auto [first, last] = by_hash_.equal_range(h);
  for (auto it = first; it != last; ++it) {
    Entry& e = *it->second;
    if (e.tokens.size() == tokens.size() && std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin())) {
      Lru& list = e.spilled ? spilled_ : lru_;
      list.splice(list.begin(), list, it->second);
      return;
    }
  }
  const int64_t need = bytes_of(state, tokens.size());
  if (need > budget_bytes_ && need > spill_budget_bytes_) return;
  lru_.push_front(Entry{{tokens.begin(), tokens.end()}, h, copy_of(state), need, home_of(state)});
  by_hash_.emplace(h, lru_.begin());
  bytes_ += need;
  ++entries_;
  if (!defer_) evict_to(budget_bytes_);  // the new entry last: alone over the budget, it is spilled
}

// Entries beyond `budget` leave lru_ from its end: into host memory when they fit the spill
// budget (the least recently spilled ones making room), else dropped.
void PrefixCache::evict_to(int64_t budget) {
  while (!lru_.empty() && bytes_.load() > budget) {
    auto victim = std::prev(lru_.end());
    if (victim->bytes > spill_budget_bytes_) {
      drop(lru_, victim);
      continue;
    }
    while (!spilled_.empty() && spilled_bytes_.load() + victim->bytes > spill_budget_bytes_)
      drop(spilled_, std::prev(spilled_.end()));
    if (victim->home != Device::cpu) move_state(victim->state, Device::cpu);
    victim->spilled = true;
    spilled_.splice(spilled_.begin(), lru_, victim);
    bytes_ -= victim->bytes;
    spilled_bytes_ += victim->bytes;
  }
}

void PrefixCache::drop(Lru& list, Lru::iterator victim) {
  auto [first, last] = by_hash_.equal_range(victim->hash);
  for (auto it = first; it != last; ++it)
    if (it->second == victim) {
      by_hash_.erase(it);
      break;
    }
  (victim->spilled ? spilled_bytes_ : bytes_) -= victim->bytes;
  --entries_;
  list.erase(victim);
}

void PrefixCache::clear() {
  while (!lru_.empty()) drop(lru_, std::prev(lru_.end()));
  while (!spilled_.empty()) drop(spilled_, std::prev(spilled_.end()));
}

}  // namespace mamba::server
