// Error helpers: names of error codes and the abort path of MAMBA_CHECK.
#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace mamba {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::io:
      return "io";
    case ErrorCode::parse:
      return "parse";
    case ErrorCode::shape:
      return "shape";
    case ErrorCode::dtype:
      return "dtype";
    case ErrorCode::unsupported:
      return "unsupported";
    case ErrorCode::out_of_range:
      return "out_of_range";
    case ErrorCode::not_found:
      return "not_found";
  }
  return "unknown";
}

void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "%s:%d: internal check failed: %s %s\n", file, line, cond, msg.c_str());
  std::abort();
}

}  // namespace mamba
