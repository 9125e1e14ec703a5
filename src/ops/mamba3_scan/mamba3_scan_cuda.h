// CUDA entry point of the simple Mamba-3 scan (mamba3_scan_cuda.cu), called by mamba3_scan.cpp
// for CUDA tensors: the recurrence of mamba3_scan.h token by token, any rank; the tensor-core
// chunked kernel lives in mamba3_scan_fast.cu.
#pragma once
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

// Same contract as mamba3_scan_ref / _fwd / _step (y allocated on the device when undefined).
void mamba3_scan_cuda(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);

// Same contract as mamba3_scan_bwd, fp32: the GEMM path where it applies (SISO), else the exact
// kernels; KernelPlan::mamba3_bwd = exact (--kernel mamba3_bwd=exact) forces the exact kernels.
Mamba3ScanGrads mamba3_scan_bwd_cuda(const KernelPlan& plan, const Mamba3ScanArgs& args, const Tensor& dy);

// The exact kernels (mamba3_scan_bwd_cuda.cu): chunks in parallel, sequential in time within a
// chunk; any rank.
Mamba3ScanGrads mamba3_scan_bwd_cuda_exact(const Mamba3ScanArgs& args, const Tensor& dy);

// What both backward paths start with: checks the arguments (shapes, CUDA f32 contiguous operands;
// bf16 operands of an inference forward are an error) and allocates the gradients (dD, dmimo_x
// zeroed). dy: the contiguous upstream gradient.
Mamba3ScanGrads mamba3_scan_bwd_cuda_grads(const Mamba3ScanArgs& args, const Tensor& dy);

// The chunked matrix form on cuBLAS batched GEMMs (mamba3_scan_bwd_gemm.cu); SISO only.
bool mamba3_scan_bwd_cuda_gemm_supported(const Mamba3ScanArgs& args);
Mamba3ScanGrads mamba3_scan_bwd_cuda_gemm(const Mamba3ScanArgs& args, const Tensor& dy);

}  // namespace mamba::ops
