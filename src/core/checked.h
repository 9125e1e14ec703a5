// Checked size arithmetic and the allocation ceiling: every size read from a file or a request
// is combined in 64 bits with overflow checks and compared with the file's size or the memory
// ceiling before anything is allocated, so a hostile input gives a one-line Error, never a wrapped
// product, an out-of-memory abort or undefined behaviour.
#pragma once
#include <cstdint>
#include <string>

#include "core/error.h"

namespace mamba {

// a·b and a+b of non-negative sizes; Error(out_of_range) naming `what` on overflow or a negative.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out))
    throw_error(ErrorCode::out_of_range, what, ": ", a, " * ", b, " is negative or overflows 64 bits");
  return out;
}
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &out))
    throw_error(ErrorCode::out_of_range, what, ": ", a, " + ", b, " is negative or overflows 64 bits");
  return out;
}
inline uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out))
    throw_error(ErrorCode::out_of_range, what, ": ", a, " * ", b, " overflows 64 bits");
  return out;
}
inline uint64_t checked_add(uint64_t a, uint64_t b, const char* what) {
  uint64_t out = 0;
  if (__builtin_add_overflow(a, b, &out))
    throw_error(ErrorCode::out_of_range, what, ": ", a, " + ", b, " overflows 64 bits");
  return out;
}

// A double (a config's `expand * hidden_size`) as an int64 in [lo, hi]; NaN, infinities and
// values outside the range are an Error(parse) naming `what` (a plain cast would be UB).
int64_t checked_to_int64(double v, int64_t lo, int64_t hi, const std::string& what);

// The most bytes one host allocation may take: the machine's physical memory unless
// set_memory_ceiling set one (the CLI maps MAMBACPP_MAX_ALLOC_BYTES onto it; the fuzzers use a small
// one); 0 restores the default.
uint64_t memory_ceiling();
void set_memory_ceiling(uint64_t bytes);
// "512M", "2G", "1048576": a positive byte count with an optional K/M/G/T suffix (powers of 1024);
// anything else is an Error(parse) naming `what`.
uint64_t parse_byte_size(const std::string& text, const std::string& what);
// Throws Error(out_of_range) "<what>: N bytes exceed the memory ceiling of M bytes ..." when
// `bytes` is above the ceiling.
void check_allocation(uint64_t bytes, const std::string& what);

}  // namespace mamba
