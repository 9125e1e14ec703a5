// Scalar activations with the reference's exact definitions (SPEC.md §0): softplus with
// PyTorch's threshold 20, silu, sigmoid.
#pragma once
#include <cmath>

namespace mamba::ops {

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
inline float silu(float v) { return v / (1.0f + std::exp(-v)); }
inline float softplus(float v) { return v <= 20.0f ? std::log1p(std::exp(v)) : v; }

// Derivatives (backward passes): silu' = σ·(1 + v·(1 − σ)); softplus' = σ below the threshold, 1 above.
inline float silu_grad(float v) {
  const float s = sigmoid(v);
  return s * (1.0f + v * (1.0f - s));
}
inline float softplus_grad(float v) { return v <= 20.0f ? sigmoid(v) : 1.0f; }

}  // namespace mamba::ops
