#include "core/lazy_library.h"

#include <dlfcn.h>

namespace mamba {

void* LazyLibrary::handle() {
  std::call_once(once_, [this] {
    for (const char* name : candidates_) {
      handle_ = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (handle_) return;
      const char* e = dlerror();
      error_ = e ? e : "dlopen failed";
    }
  });
  return handle_;
}

std::string LazyLibrary::error() {
  return handle() ? "" : error_;
}

void* LazyLibrary::symbol(const char* name) {
  void* h = handle();
  return h ? dlsym(h, name) : nullptr;
}

std::string LazyLibrary::check(std::initializer_list<const char*> names) {
  if (!handle())
    return std::string(candidates_.empty() ? "?" : candidates_.front()) + " could not be loaded (" + error_ +
           ")";
  std::string missing;
  for (const char* name : names)
    if (!dlsym(handle_, name)) missing += std::string(missing.empty() ? "" : ", ") + name;
  return missing.empty() ? "" : std::string(candidates_.front()) + " lacks " + missing;
}

}  // namespace mamba
