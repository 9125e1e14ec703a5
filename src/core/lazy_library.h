// A shared library opened on first use, for the optional GPU libraries (cuBLAS, NCCL) that a
// process must not pay for, or need installed, unless it calls them: a binary that links them
// runs their static initializers at start (cuBLASLt's cost ~0.45 s) and fails to start where
// they are missing. The forwarders that use this (backend/cuda/cublas_loader.cpp,
// dist/nccl_loader.cpp) define the library's functions themselves, declared by its own header.
#pragma once
#include <initializer_list>
#include <mutex>
#include <string>
#include <vector>

namespace mamba {

class LazyLibrary {
public:
  // The names tried in order with dlopen: a soname (the loader's search path) and then paths.
  LazyLibrary(std::initializer_list<const char*> candidates) : candidates_(candidates) {}

  // The opened library, or null; the first call opens it.
  void* handle();
  // Why it could not be opened ("" when it was).
  std::string error();
  // The address of `name` in the library, or null (library or symbol missing).
  void* symbol(const char* name);
  // symbol(name) as a function returning R and taking the types of `args`: a forwarder passes its
  // own parameters, so the type is its declared signature (decltype(&f) is ambiguous where C++
  // overloads of f exist).
  template <typename R, typename... A>
  auto function_like(const char* name, A... /*args*/) -> R (*)(A...) {
    return reinterpret_cast<R (*)(A...)>(symbol(name));
  }
  // The names among `names` the library lacks, comma-separated, or why it did not open; "" = all there.
  std::string check(std::initializer_list<const char*> names);

private:
  std::vector<const char*> candidates_;
  std::once_flag once_;
  void* handle_ = nullptr;
  std::string error_;
};

}  // namespace mamba
