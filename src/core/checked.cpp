// Checked arithmetic helpers and the allocation ceiling (see checked.h).
#include "core/checked.h"

#include <unistd.h>

#include <atomic>
#include <cmath>

namespace mamba {

namespace {

std::atomic<uint64_t> g_ceiling{0};  // 0: the default (environment or physical memory)

uint64_t default_ceiling() {
  static const uint64_t value = [] {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
    return uint64_t{1} << 40;
  }();
  return value;
}

}  // namespace

uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  uint64_t n = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    if (__builtin_mul_overflow(n, uint64_t{10}, &n) ||
        __builtin_add_overflow(n, static_cast<uint64_t>(text[i] - '0'), &n))
      throw_error(ErrorCode::parse, what, " is \"", text, "\", too large");
  }
  int shift = 0;
  if (i + 1 == text.size()) {
    switch (text[i]) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        shift = -1;
        break;
    }
  } else if (i != text.size()) {
    shift = -1;
  }
  if (i == 0 || shift < 0 || n == 0)
    throw_error(ErrorCode::parse, what, " is \"", text,
                "\", expected a positive number of bytes with an optional K/M/G/T suffix");
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, uint64_t{1} << shift, &bytes))
    throw_error(ErrorCode::parse, what, " is \"", text, "\", too large");
  return bytes;
}

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
                " bytes (physical memory, or set by MAMBACPP_MAX_ALLOC_BYTES)");
}

}  // namespace mamba
