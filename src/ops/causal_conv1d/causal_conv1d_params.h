// The causal conv1d's packed parameters, built once by its fronts (causal_conv1d.cpp,
// causal_conv1d_bwd.cpp) after their checks, and the CPU kernels they dispatch to
// (causal_conv1d_cpu.cpp, causal_conv1d_bwd_cpu.cpp).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace mamba::ops {

// x [batch, seq_len, channels] (seq_len 1 for a step), weight [channels, width]; silu after the
// taps when `act`.
struct CausalConv1dParams {
  int64_t batch, seq_len, channels, width;
  bool act;
};

namespace cpu {

// Whole sequence / one token (x [batch, channels]) from the state, which they update.
Tensor causal_conv1d_fwd(const CausalConv1dParams& p, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, Tensor& state);
Tensor causal_conv1d_step(const CausalConv1dParams& p, const Tensor& x, const Tensor& weight,
                          const Tensor& bias, Tensor& state);
// From a zero state; dy contiguous. Accumulates dweight and dbias (when defined).
Tensor causal_conv1d_bwd(const CausalConv1dParams& p, const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, Tensor& dweight, Tensor& dbias);

}  // namespace cpu

}  // namespace mamba::ops
