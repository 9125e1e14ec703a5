// Depthwise causal conv1d (SPEC.md §0): out[c,t] = b[c] + Σ_k w[c,k]·in[c, t-(K-1)+k], optionally
// followed by silu. The state holds the K-1 inputs before the call (zeros for a fresh
// sequence), so whole-sequence calls, chunked prefill and one-token steps compose exactly.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// x: [batch, seq_len, channels] (rows may be strided, last dim contiguous); weight: [channels, width];
// bias: [channels] or undefined; state: [batch, channels, width-1], updated to the last width-1
// inputs. Returns y: [batch, seq_len, channels].
Tensor causal_conv1d_fwd(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                         bool silu);

// One token: x: [batch, channels] (rows may be strided) -> y: [batch, channels].
Tensor causal_conv1d_step(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Tensor& state, bool silu);

// Backward of a whole-sequence call from a zero state (training; causal_conv1d_bwd.cpp):
// dy [batch, seq_len, channels], x as in the forward. Returns dx [batch, seq_len, channels];
// accumulates dweight [channels, width] and dbias [channels] (when defined).
Tensor causal_conv1d_bwd(Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, bool silu, Tensor& dweight, Tensor& dbias);

}  // namespace mamba::ops
