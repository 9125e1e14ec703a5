// Errors: `Error` for bad input (thrown from cold paths only, caught at the edges), and
// MAMBA_CHECK for broken invariants of our own code (aborts with file and line).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mamba {

enum class ErrorCode { invalid_argument, io, parse, shape, dtype, unsupported, out_of_range, not_found };

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

private:
  ErrorCode code_;
};

// Builds a message from a stream expression: throw_error(ErrorCode::shape, "got ", n).
template <typename... Args>
[[noreturn]] void throw_error(ErrorCode code, const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(code, os.str());
}

[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace mamba

#define MAMBA_CHECK(cond, ...)                                                 \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::ostringstream mamba_check_os_;                                      \
      mamba_check_os_ << "" __VA_OPT__(<< __VA_ARGS__);                        \
      ::mamba::check_failed(__FILE__, __LINE__, #cond, mamba_check_os_.str()); \
    }                                                                          \
  } while (0)
