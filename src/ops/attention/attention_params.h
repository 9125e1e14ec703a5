// Attention's packed parameters, built once by its fronts (attention.cpp, attention_bwd.cpp) after
// their checks, and the CPU kernels they dispatch to (attention_cpu.cpp, attention_bwd_cpu.cpp).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace mamba::ops {

// Causal GQA over a KV cache: q [batch, seq_len, n_heads, head_dim] at positions pos.., the
// caches [batch, cap, n_kv, head_dim].
struct AttentionParams {
  int64_t batch, seq_len, n_heads, head_dim, cap, n_kv, pos;
  float scale;
};

// Rotary embedding of x [batch, seq_len, heads, head_dim] over its first rotary_dim columns.
struct RotaryParams {
  int64_t batch, seq_len, heads, head_dim, rotary_dim, pos0;
  float base, sign;
  bool interleaved;
};

// Backward of causal GQA from position 0: q [batch, seq_len, n_heads, head_dim], k and v
// [batch, seq_len, n_kv, head_dim].
struct AttentionBwdParams {
  int64_t batch, seq_len, n_heads, head_dim, n_kv;
  float scale;
};

namespace cpu {

Tensor attention_fwd(const AttentionParams& p, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache);
void rotary_rotate(const RotaryParams& p, Tensor& x);
// dout, q, k, v contiguous; allocates dq, dk, dv.
void attention_bwd(const AttentionBwdParams& p, const Tensor& dout, const Tensor& q, const Tensor& k,
                   const Tensor& v, Tensor& dq, Tensor& dk, Tensor& dv);

}  // namespace cpu

}  // namespace mamba::ops
