// 64-bit non-cryptographic hashing for model fingerprints and state-file checksums: four
// independent multiply-rotate lanes (the xxHash64 round) so it runs at memory speed. Stable
// across machines and thread counts (little-endian hosts, as everything here).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mamba::runtime {

uint64_t hash_bytes(const void* data, size_t bytes, uint64_t seed = 0);
inline uint64_t hash_string(std::string_view s, uint64_t seed = 0) {
  return hash_bytes(s.data(), s.size(), seed);
}
// Order-dependent combination of two hashes.
uint64_t hash_combine(uint64_t h, uint64_t value);

}  // namespace mamba::runtime
