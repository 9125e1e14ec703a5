// Helpers shared by the linear forward and backward CUDA files (cuBLAS operand types, strided rows).
#pragma once
#include <library_types.h>

#include <cstdint>

#include "core/error.h"
#include "core/tensor.h"

namespace mamba::ops::linear_detail {

// cuBLAS type of a GEMM operand stored as `t`.
inline cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
    default:
      MAMBA_CHECK(false, "linear: unsupported dtype " << dtype_name(t));
  }
  return CUDA_R_32F;
}

// Row stride of x seen as a [rows, in] matrix with unit column stride, or 0 when its leading
// dims cannot be collapsed into one strided row index (column views of an in_proj output pass).
inline int64_t row_stride(const Tensor& x) {
  if (x.stride(-1) != 1) return 0;
  if (x.dim() == 1) return x.size(0);
  for (int64_t d = 0; d + 2 < x.dim(); ++d) {
    if (x.size(d) != 1 && x.stride(d) != x.stride(d + 1) * x.size(d + 1)) return 0;
  }
  return x.stride(-2);
}

}  // namespace mamba::ops::linear_detail
