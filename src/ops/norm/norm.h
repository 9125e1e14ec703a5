// Normalizations over the last dimension: RMSNorm, LayerNorm and the gated, grouped RMSNorm of
// Mamba-2/Mamba-3 (SPEC.md §0, §2.5). All computed in f32.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// y = x·rsqrt(mean(x²) + eps)·weight over the last dim. x: [..., n]; weight: [n].
Tensor rms_norm(Exec& exec, const Tensor& x, const Tensor& weight, float eps);

// y = (x - mean)·rsqrt(var + eps)·weight + bias over the last dim.
Tensor layer_norm(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);

// Decode's residual step in one pass (SPEC §4.3): residual += x (skipped when x is undefined),
// then returns rms_norm / layer_norm of the updated residual — the values of add_ then the norm,
// bit for bit on either device. residual: [..., n] contiguous, updated in place; x: its shape.
Tensor add_rms_norm_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight, float eps);
Tensor add_layer_norm_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, float eps);

// RMSNormGated (§2.5): x, z: [..., n]; weight: [n]; groups of `group_size` contiguous channels
// each get their own rstd. norm_before_gate=false: y = norm(x·silu(z))·w; true: norm(x)·w·silu(z).
// z may be undefined (no gate).
Tensor rms_norm_gated(Exec& exec, const Tensor& x, const Tensor& z, const Tensor& weight, int64_t group_size,
                      bool norm_before_gate, float eps);

// Backward (norm_bwd.cpp): each returns dx [..., n] and accumulates dweight (and dbias) [n].
Tensor rms_norm_bwd(Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& weight, float eps,
                    Tensor& dweight);
Tensor layer_norm_bwd(Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& weight, float eps,
                      Tensor& dweight, Tensor& dbias);
// Also sets dz (a new tensor shaped like z) when z is defined.
Tensor rms_norm_gated_bwd(Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& z,
                          const Tensor& weight, int64_t group_size, bool norm_before_gate, float eps,
                          Tensor& dweight, Tensor& dz);

}  // namespace mamba::ops
