// CUDA entry points of the linear op (linear_cuda.cu), called by linear.cpp for CUDA tensors.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// The plan picks the decode GEMV's kernel (KernelPlan::decode_gemv, gemv_split).
Tensor linear_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& weight, const Tensor& bias);
void linear_into_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& weight, const Tensor& bias,
                      Tensor& y);
// Decode fusions of the bf16 GEMV (linear.h): each returns false, doing nothing, where the GEMV
// does not apply (the caller then runs the ops it fuses).
bool decode_gemv_applies_cuda(const KernelPlan& plan, int64_t rows, const Tensor& weight);
bool rms_norm_linear_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& norm_weight, float eps,
                          const Tensor& weight, Tensor& y);
bool linear_add_cuda_(const KernelPlan& plan, Tensor& residual, const Tensor& x, const Tensor& weight);
// Backward (linear_bwd_cuda.cu), same contract as linear_bwd.
Tensor linear_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dweight,
                       Tensor& dbias);

}  // namespace mamba::ops
