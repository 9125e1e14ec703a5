// CUDA entry point of the simple SSD scan (ssd_cuda.cu), called by ssd.cpp for CUDA tensors:
// the sequential recurrence, correct for every shape; the tensor-core chunked kernel lives in
// ssd_fast.cu.
#pragma once
#include "ops/ssd/ssd.h"

namespace mamba::ops {

// Same contract as ssd_ref / ssd_fwd (state continued and updated).
Tensor ssd_scan_cuda(const SsdArgs& args, Tensor& state);

// Same contract as ssd_bwd (ssd_bwd_cuda.cu): chunk-parallel, fp32, exact up to rounding.
SsdGrads ssd_bwd_cuda(const SsdArgs& args, const Tensor& dy);

}  // namespace mamba::ops
