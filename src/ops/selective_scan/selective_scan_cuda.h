// CUDA entry point of the selective scan (selective_scan_cuda.cu), called by selective_scan.cpp.
#pragma once
#include "ops/selective_scan/selective_scan.h"

namespace mamba::ops {

Tensor selective_scan_fwd_cuda(const SelectiveScanArgs& args, Tensor& state);

// Same contract as selective_scan_bwd (selective_scan_bwd_cuda.cu).
SelectiveScanGrads selective_scan_bwd_cuda(const SelectiveScanArgs& args, const Tensor& dy);

}  // namespace mamba::ops
