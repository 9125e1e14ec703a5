// Scalar activations with the reference's exact definitions (SPEC.md §0): softplus with
// PyTorch's threshold 20, silu, sigmoid.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mamba::ops {

inline float sigmoid(float v) {
  return 1.0f / (1.0f + std::exp(-v));
}
inline float silu(float v) {
  return v / (1.0f + std::exp(-v));
}
inline float softplus(float v) {
  return v <= 20.0f ? std::log1p(std::exp(v)) : v;
}

// Derivatives (backward passes): silu' = σ·(1 + v·(1 − σ)); softplus' = σ below the threshold, 1 above.
inline float silu_grad(float v) {
  const float s = sigmoid(v);
  return s * (1.0f + v * (1.0f - s));
}
inline float softplus_grad(float v) {
  return v <= 20.0f ? sigmoid(v) : 1.0f;
}

// exp(x) for x <= 0 as plain arithmetic so loops over it vectorize (std::exp does not without
// -ffast-math). Cody-Waite range reduction + degree-6 polynomial: relative error < 2e-7;
// x < -87 returns 0 (the decays of the scans only need this range).
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : (x > 0.0f ? 0.0f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// silu through exp_nonpositive, so loops over it vectorize (a scalar expf per value was most of
// the gated norm's and the conv's time in prefill): e = exp(−|v|); v ≥ 0: v / (1 + e), else
// v·e / (1 + e). Relative error < 5e-7 against silu; below v = −87 it returns v·e^−87 / (1 + e^−87)
// (|error| < 1e-35).
inline float silu_fast(float v) {
  const float e = exp_nonpositive(v < 0.0f ? v : -v);
  return (v < 0.0f ? v * e : v) / (1.0f + e);
}

}  // namespace mamba::ops
