// The MLP activations of GateAct as scalar f32 functions and their derivatives, shared by the CPU
// ops (elementwise.cpp, elementwise_bwd.cpp) and the CUDA kernels (host + device under nvcc), so
// both evaluate the same formulas (the kernels are compiled without fast-math). silu is the one of
// activations.h; gelu is the exact erf form, gelu_tanh PyTorch's approximate='tanh' (same
// constants and operation order as ATen's GeluKernel), relu2 = relu(x)².
#pragma once
#include <math.h>

#include <type_traits>

#include "core/error.h"
#include "ops/elementwise/elementwise.h"

#if defined(__CUDACC__)
#define MAMBA_GATE_ACT_FN __host__ __device__ __forceinline__
#else
#define MAMBA_GATE_ACT_FN inline
#endif

namespace mamba::ops::gate_act {

inline constexpr float kSqrtHalf = 0.707106781186547524401f;    // 1/√2
inline constexpr float kInvSqrt2Pi = 0.398942280401432677940f;  // 1/√(2π)
inline constexpr float kTanhBeta = 0.797884560802865355880f;    // √(2/π) = √2·(2/√π)·0.5
inline constexpr float kTanhKappa = 0.044715f;

// act(v).
template <GateAct A>
MAMBA_GATE_ACT_FN float value(float v) {
  if constexpr (A == GateAct::silu) {
    return v / (1.0f + expf(-v));
  } else if constexpr (A == GateAct::gelu) {
    return 0.5f * v * (1.0f + erff(v * kSqrtHalf));
  } else if constexpr (A == GateAct::gelu_tanh) {
    const float inner = kTanhBeta * (v + kTanhKappa * (v * v * v));
    return 0.5f * v * (1.0f + tanhf(inner));
  } else {
    return v > 0.0f ? v * v : 0.0f;
  }
}

// act'(v).
template <GateAct A>
MAMBA_GATE_ACT_FN float grad(float v) {
  if constexpr (A == GateAct::silu) {
    const float s = 1.0f / (1.0f + expf(-v));
    return s * (1.0f + v * (1.0f - s));
  } else if constexpr (A == GateAct::gelu) {
    return 0.5f * (1.0f + erff(v * kSqrtHalf)) + v * kInvSqrt2Pi * expf(-0.5f * v * v);
  } else if constexpr (A == GateAct::gelu_tanh) {
    const float v2 = v * v;
    const float t = tanhf(kTanhBeta * (v + kTanhKappa * (v2 * v)));
    return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kTanhBeta * (1.0f + 3.0f * kTanhKappa * v2);
  } else {
    return v > 0.0f ? 2.0f * v : 0.0f;
  }
}

// Calls fn(std::integral_constant<GateAct, act>{}) so a loop or kernel is instantiated per
// activation (host only).
template <typename Fn>
decltype(auto) dispatch(GateAct act, Fn&& fn) {
  switch (act) {
    case GateAct::silu:
      return fn(std::integral_constant<GateAct, GateAct::silu>{});
    case GateAct::gelu:
      return fn(std::integral_constant<GateAct, GateAct::gelu>{});
    case GateAct::gelu_tanh:
      return fn(std::integral_constant<GateAct, GateAct::gelu_tanh>{});
    case GateAct::relu2:
      return fn(std::integral_constant<GateAct, GateAct::relu2>{});
  }
  throw_error(ErrorCode::invalid_argument, "unknown GateAct ", static_cast<int>(act));
}

inline const char* name(GateAct act) {
  switch (act) {
    case GateAct::silu:
      return "silu";
    case GateAct::gelu:
      return "gelu";
    case GateAct::gelu_tanh:
      return "gelu_tanh";
    case GateAct::relu2:
      return "relu2";
  }
  return "unknown";
}

}  // namespace mamba::ops::gate_act
