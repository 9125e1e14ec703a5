// CUDA entry point of the simple SSD scan (ssd_cuda.cu), called by ssd.cpp for CUDA tensors:
// the sequential recurrence, correct for every shape; the tensor-core chunked kernel lives in
// ssd_fast.cu.
#pragma once
#include "ops/ssd/ssd.h"

namespace mamba::ops {

// Same contract as ssd_ref / ssd_fwd (state continued and updated).
Tensor ssd_scan_cuda(const SsdArgs& args, Tensor& state);

// Same contract as ssd_bwd: the GEMM (chunked matrix) form where it applies (head_dim ≤ 256),
// else, or with KernelPlan::ssd_bwd = exact, the exact scan below.
SsdGrads ssd_bwd_cuda(const KernelPlan& plan, const SsdArgs& args, const Tensor& dy);

// The chunk-parallel scan (ssd_bwd_cuda.cu): fp32, exact up to rounding, every shape.
SsdGrads ssd_bwd_cuda_exact(const SsdArgs& args, const Tensor& dy);

// The chunked matrix form (ssd_bwd_gemm.cu): cuBLAS batched GEMMs, fp32 (with args.fast_bf16:
// bf16 operands for the per-head Q×Q GEMMs, TF32 for the others); `supported` tells whether it
// takes these shapes.
bool ssd_bwd_gemm_supported(const SsdArgs& args);
SsdGrads ssd_bwd_cuda_gemm(const SsdArgs& args, const Tensor& dy);

}  // namespace mamba::ops
