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
// gained otherwise). False with the plan's fuse_decode off (timing comparisons). Asked by the
// decode ops below (and tests); code above ops/ never needs it.
bool decode_gemv_applies(Exec& exec, int64_t rows, const Tensor& weight);

// ---- Decode in a pre-norm RMSNorm residual stream. `residual` [rows, d_model] (contiguous) is
// the stream; `pending` the last sublayer's output not yet added into it ([rows, d_model], or
// undefined: none). These fronts choose between the fused GEMV kernels above and the unfused ops
// (add deferred into the next norm's kernel, ops::add_rms_norm_); the values are the same.

// A sublayer with an input and an output projection around an inner step f:
//   proj = decode_in_proj(residual, pending, p)     residual += pending; linear(rms_norm(residual), in)
//   o = f(proj)
//   pending = decode_out_proj(residual, o, p)       linear(o, out), added into residual (returns
//                                                   undefined) or returned as the new pending
// Fused (norm in in_proj's GEMV prologue, add in out_proj's epilogue) where the decode GEMV takes
// both weights for these rows; both calls choose alike.
struct DecodeProjections {
  const Tensor& norm_weight;  // [d_model]  the block's RMSNorm weight
  float eps;
  const Tensor& in_weight;   // [d_in, d_model]
  const Tensor& out_weight;  // [d_model, d_out]
};
Tensor decode_in_proj(Exec& exec, Tensor& residual, const Tensor& pending, const DecodeProjections& p);
Tensor decode_out_proj(Exec& exec, Tensor& residual, const Tensor& o, const DecodeProjections& p);

// The head: linear(rms_norm(residual += pending, norm_weight, eps), weight) -> [rows, out]; one
// GEMV with the norm in its prologue where nothing is pending and the decode GEMV applies.
Tensor add_rms_norm_linear(Exec& exec, Tensor& residual, const Tensor& pending, const Tensor& norm_weight,
                           float eps, const Tensor& weight);

// Backward (linear_bwd.cpp): dy [..., out] -> dx [..., in]; accumulates dweight += dyᵀ·x and,
// when dbias is defined, dbias += Σ_rows dy.
Tensor linear_bwd(Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dweight,
                  Tensor& dbias);

}  // namespace mamba::ops
