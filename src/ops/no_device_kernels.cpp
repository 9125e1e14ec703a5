// A build without a device backend: no kernel table (src/ops/CMakeLists.txt compiles this file
// instead of cuda_kernels.cpp). No CUDA tensor can exist here, so no op front asks for it.
#include "ops/kernels.h"

namespace mamba::ops {

const CudaKernels* cuda_kernel_table() {
  return nullptr;
}

}  // namespace mamba::ops
