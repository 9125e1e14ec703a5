// One libFuzzer target per surface: FUZZ_SURFACE names the entry (entries.h). Clean refusals
// (mamba::Error) are expected; libFuzzer reports anything else as a crash.
#include <cstddef>
#include <cstdint>

#include "entries.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  mamba::fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mamba::fuzz::FUZZ_SURFACE(data, size);
  return 0;
}
