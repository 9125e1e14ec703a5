// Causal multi-head attention with grouped KV heads over a KV cache, and rotary embeddings
// (SPEC.md §4.5). Query t of a call at position `pos` attends keys 0 .. pos+t.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// q: [batch, seq_len, n_heads, head_dim]; k_cache, v_cache: [batch, capacity, n_kv_heads, head_dim]
// holding valid keys for positions [0, pos + seq_len). Head i uses kv head i / (n_heads / n_kv_heads).
// Returns [batch, seq_len, n_heads, head_dim].
Tensor attention_fwd(Exec& exec, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t pos,
                     float scale);

// In-place rotary on the first `rotary_dim` dims of every head of x: [batch, seq_len, heads, head_dim],
// token t at position pos0 + t; inv_freq_j = base^(−2j/rotary_dim). GPT-NeoX half-split pairs
// (j, j + rotary_dim/2), or interleaved pairs (2j, 2j+1).
void rotary_apply(Exec& exec, Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved);
// The same pairs rotated by sign·angle (sign +1: rotary_apply; −1: its inverse, rotary_bwd).
void rotary_rotate(Exec& exec, Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved,
                   float sign);

// ---- Backward (attention_bwd.cpp), whole sequences from position 0 (training). ----

// q: [batch, seq_len, n_heads, head_dim]; k, v: [batch, seq_len, n_kv_heads, head_dim] (the keys of
// this call only); dout like q. Sets dq, dk, dv (new tensors shaped like q, k, v).
void attention_bwd(Exec& exec, const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   float scale, Tensor& dq, Tensor& dk, Tensor& dv);

// Backward of rotary_apply: rotates the gradient dx back by the same angles, in place.
void rotary_bwd(Exec& exec, Tensor& dx, int64_t rotary_dim, int64_t pos0, float base, bool interleaved);

}  // namespace mamba::ops
