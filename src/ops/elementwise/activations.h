// Scalar activations with the reference's exact definitions (SPEC.md §0): softplus with
// PyTorch's threshold 20, silu, sigmoid.
#pragma once
#include <cmath>

namespace mamba::ops {

inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
inline float silu(float v) { return v / (1.0f + std::exp(-v)); }
inline float softplus(float v) { return v <= 20.0f ? std::log1p(std::exp(v)) : v; }

}  // namespace mamba::ops
