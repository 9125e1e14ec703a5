// The normalizations' packed sizes, built once by their fronts (norm.cpp, norm_bwd.cpp) after
// their checks, and the CPU kernels they dispatch to (norm_cpu.cpp, norm_bwd_cpu.cpp).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace mamba::ops {

// x seen as [rows, n]; each group of `group_size` contiguous channels gets its own rstd (n for
// LayerNorm and plain RMSNorm); with a gate z, norm_before_gate picks norm(x)·w·silu(z) over
// norm(x·silu(z))·w.
struct NormParams {
  int64_t rows, n, group_size;
  bool norm_before_gate;
  float eps;
};

namespace cpu {

// Inputs contiguous; z may be undefined (no gate).
Tensor layer_norm(const NormParams& p, const Tensor& x, const Tensor& weight, const Tensor& bias);
Tensor rms_norm_gated(const NormParams& p, const Tensor& x, const Tensor& z, const Tensor& weight);
// residual += x, both contiguous and of one shape.
void add_into(Tensor& residual, const Tensor& x);

// Return dx and accumulate dweight (and dbias when defined); dz is set when z is defined.
Tensor layer_norm_bwd(const NormParams& p, const Tensor& dy, const Tensor& x, const Tensor& weight,
                      Tensor& dweight, Tensor& dbias);
Tensor rms_norm_gated_bwd(const NormParams& p, const Tensor& dy, const Tensor& x, const Tensor& z,
                          const Tensor& weight, Tensor& dweight, Tensor& dz);

}  // namespace cpu

}  // namespace mamba::ops
