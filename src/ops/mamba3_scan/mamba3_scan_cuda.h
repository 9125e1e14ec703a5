// CUDA entry point of the simple Mamba-3 scan (mamba3_scan_cuda.cu), called by mamba3_scan.cpp
// for CUDA tensors: the recurrence of mamba3_scan.h token by token, any rank; the tensor-core
// chunked kernel lives in mamba3_scan_fast.cu.
#pragma once
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

// Same contract as mamba3_scan_ref / _fwd / _step (y allocated on the device when undefined).
void mamba3_scan_cuda(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);

// Same contract as mamba3_scan_bwd (mamba3_scan_bwd_cuda.cu): fp32, chunks in parallel.
Mamba3ScanGrads mamba3_scan_bwd_cuda(const Mamba3ScanArgs& args, const Tensor& dy);

}  // namespace mamba::ops
