// Small fused elementwise ops used by the model files, so model code never touches raw memory
// and each op has one place to get a device implementation. Inputs may be column views
// (rows strided, last dim contiguous) unless stated.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

// a += b (same shape, both contiguous).
void add_(Tensor& a, const Tensor& b);

// h: [..., 2n] -> [..., n]. gate_first=false: h[:n]·silu(h[n:]) (GatedMLP, MHA mlp: value first);
// gate_first=true: silu(h[:n])·h[n:] (Mamba-2's fused MLP part, SPEC §2.2 step 7).
Tensor swiglu(const Tensor& h, bool gate_first);

// y ← y·silu(z); y contiguous [batch, seq_len, n], z [batch, seq_len, n] (rows may be strided).
void mul_silu_(Tensor& y, const Tensor& z);

// clamp(softplus(raw + bias), lo, hi): raw [batch, seq_len, n] (rows may be strided), bias [n].
Tensor softplus_bias_clamp(const Tensor& raw, const Tensor& bias, float lo, float hi);

// [..., n1] ++ [..., n2] -> [..., n1 + n2].
Tensor concat_last(const Tensor& a, const Tensor& b);

// Rows of `table` [vocab, d] for ids (i64 or i32, any shape) -> [ids..., d]. Throws
// Error(out_of_range) naming the position for an id outside [0, vocab).
Tensor embedding(const Tensor& ids, const Tensor& table);

}  // namespace mamba::ops
