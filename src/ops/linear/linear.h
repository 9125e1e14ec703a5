// Linear layer y = x·Wᵀ (+ b), the GEMM every mixer is built on (SPEC.md §0: weight [out, in]).
// CPU: OpenBLAS sgemm.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// x: [..., in]; weight: [out, in]; bias: [out] or undefined; returns y: [..., out] (f32).
Tensor linear(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Same, writing into a preallocated contiguous y ([rows, out] view-compatible).
void linear_into(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y);

// Decode fusions around the one-token GEMV (linear_cuda.cu: CUDA, bf16 weight, 1-4 rows), one
// kernel each there; elsewhere they run the ops they fuse in sequence. Either way the values are
// those of the unfused ops, bit for bit.
// y = linear(rms_norm(x, norm_weight, eps), weight): x [rows, in] -> y [rows, out].
Tensor rms_norm_linear(Exec& exec, const Tensor& x, const Tensor& norm_weight, float eps,
                       const Tensor& weight);
// residual += linear(x, weight), in place: x [rows, in]; residual [rows, out] contiguous.
void linear_add_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight);
// Whether both of the above run as single kernels for `rows` rows of `weight` (no fusion is
// gained otherwise). False with the plan's fuse_decode off (timing comparisons).
bool decode_gemv_applies(Exec& exec, int64_t rows, const Tensor& weight);

// Backward (linear_bwd.cpp): dy [..., out] -> dx [..., in]; accumulates dweight += dyᵀ·x and,
// when dbias is defined, dbias += Σ_rows dy.
Tensor linear_bwd(Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dweight,
                  Tensor& dbias);

}  // namespace mamba::ops
