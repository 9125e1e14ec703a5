// Linear layer y = x·Wᵀ (+ b), the GEMM every mixer is built on (SPEC.md §0: weight [out, in]).
// CPU: OpenBLAS sgemm.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

// x: [..., in]; weight: [out, in]; bias: [out] or undefined; returns y: [..., out] (f32).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Same, writing into a preallocated contiguous y ([rows, out] view-compatible).
void linear_into(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y);

// Backward (linear_bwd.cpp): dy [..., out] -> dx [..., in]; accumulates dweight += dyᵀ·x and,
// when dbias is defined, dbias += Σ_rows dy.
Tensor linear_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dweight, Tensor& dbias);

}  // namespace mamba::ops
