// Checked arithmetic helpers and the allocation ceiling (see checked.h).
#include "core/checked.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>

namespace mamba {

namespace {

std::atomic<uint64_t> g_ceiling{0};  // 0: the default (environment or physical memory)

uint64_t default_ceiling() {
  static const uint64_t value = [] {
    if (const char* env = std::getenv("MAMBACPP_MAX_ALLOC_BYTES"); env && *env) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(env, &end, 10);
      uint64_t scale = 1;
      switch (end && *end ? *end : ' ') {
        case 'K':
        case 'k':
          scale = uint64_t{1} << 10;
          break;
        case 'M':
        case 'm':
          scale = uint64_t{1} << 20;
          break;
        case 'G':
        case 'g':
          scale = uint64_t{1} << 30;
          break;
        case 'T':
        case 't':
          scale = uint64_t{1} << 40;
          break;
        default:
          break;
      }
      uint64_t bytes = 0;
      if (n > 0 && !__builtin_mul_overflow(static_cast<uint64_t>(n), scale, &bytes)) return bytes;
    }
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
    return uint64_t{1} << 40;
  }();
  return value;
}

}  // namespace

int64_t checked_to_int64(double v, int64_t lo, int64_t hi, const std::string& what) {
  // 2^63 is exactly representable; anything at or beyond it (or NaN) cannot be cast.
  if (!(v >= -9.2e18 && v <= 9.2e18) || v < static_cast<double>(lo) || v > static_cast<double>(hi))
    throw_error(ErrorCode::parse, what, " is ", v, ", expected a value in [", lo, ", ", hi, "]");
  return static_cast<int64_t>(v);
}

uint64_t memory_ceiling() {
  const uint64_t set = g_ceiling.load(std::memory_order_relaxed);
  return set ? set : default_ceiling();
}

void set_memory_ceiling(uint64_t bytes) {
  g_ceiling.store(bytes, std::memory_order_relaxed);
}

void check_allocation(uint64_t bytes, const std::string& what) {
  const uint64_t ceiling = memory_ceiling();
  if (bytes > ceiling)
    throw_error(ErrorCode::out_of_range, what, ": ", bytes, " bytes exceed the memory ceiling of ", ceiling,
                " bytes (physical memory, or MAMBACPP_MAX_ALLOC_BYTES)");
}

}  // namespace mamba
