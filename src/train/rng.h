// A small portable random generator (SplitMix64) for data generation: the same stream on every
// platform and standard library (std::uniform_int_distribution is implementation-defined), and a
// state of one integer, so a batch is a pure function of (seed, step).
#pragma once
#include <cmath>
#include <cstdint>

namespace mamba::train {

class Rng {
public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // A generator for one (seed, stream, index) triple, e.g. the training batch of one step.
  static Rng for_index(uint64_t seed, uint64_t stream, uint64_t index) {
    Rng mix(seed ^ (stream * 0x9e3779b97f4a7c15ull));
    const uint64_t a = mix.next();
    return Rng(a ^ (index * 0xd1b54a32d192ed03ull) ^ (index >> 7));
  }

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform integer in [lo, hi] (inclusive), unbiased (rejection of the incomplete last block).
  int64_t uniform_int(int64_t lo, int64_t hi) {
    const uint64_t range = static_cast<uint64_t>(hi - lo) + 1;
    if (range == 0) return static_cast<int64_t>(next());  // the whole 64-bit range
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x = next();
    while (x >= limit) x = next();
    return lo + static_cast<int64_t>(x % range);
  }
  // Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
  uint64_t state_;
};

}  // namespace mamba::train
