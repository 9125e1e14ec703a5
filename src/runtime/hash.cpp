// 64-bit hashing (see hash.h): the xxHash64 round and avalanche constants, four lanes over
// 32-byte stripes, then the tail word by word and byte by byte.
#include "runtime/hash.h"

#include <cstring>

namespace mamba::runtime {
namespace {

constexpr uint64_t k1 = 0x9E3779B185EBCA87ull, k2 = 0xC2B2AE3D27D4EB4Full, k3 = 0x165667B19E3779F9ull;

inline uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}
inline uint64_t round(uint64_t lane, uint64_t word) {
  return rotl(lane + word * k2, 31) * k1;
}
inline uint64_t load64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}
inline uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= k2;
  h ^= h >> 29;
  h *= k3;
  h ^= h >> 32;
  return h;
}

}  // namespace

uint64_t hash_bytes(const void* data, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* end = p + bytes;
  uint64_t h = seed + k3 + bytes;
  if (bytes >= 32) {
    uint64_t lane[4] = {seed + k1 + k2, seed + k2, seed, seed - k1};
    for (; end - p >= 32; p += 32)
      for (int i = 0; i < 4; ++i) lane[i] = round(lane[i], load64(p + 8 * i));
    h = rotl(lane[0], 1) + rotl(lane[1], 7) + rotl(lane[2], 12) + rotl(lane[3], 18) + bytes;
    for (uint64_t l : lane) h = (h ^ round(0, l)) * k1 + k3;
  }
  for (; end - p >= 8; p += 8) h = rotl(h ^ round(0, load64(p)), 27) * k1 + k3;
  for (; p < end; ++p) h = rotl(h ^ (*p * k3), 11) * k1;
  return avalanche(h);
}

uint64_t hash_combine(uint64_t h, uint64_t value) {
  return avalanche(rotl(h, 27) * k1 + value * k2 + k3);
}

}  // namespace mamba::runtime
