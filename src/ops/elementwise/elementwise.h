// Small fused elementwise ops used by the model files, so model code never touches raw memory
// and each op has one place to get a device implementation. Inputs may be column views
// (rows strided, last dim contiguous) unless stated.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// a += b (same shape, both contiguous).
void add_(Exec& exec, Tensor& a, const Tensor& b);

// x *= s in place. x contiguous (f32 on CPU; f32 on CUDA).
void scale_(Exec& exec, Tensor& x, float s);

// h: [..., 2n] -> [..., n]. gate_first=false: h[:n]·silu(h[n:]) (GatedMLP, MHA mlp: value first);
// gate_first=true: silu(h[:n])·h[n:] (Mamba-2's fused MLP part, SPEC §2.2 step 7).
Tensor swiglu(Exec& exec, const Tensor& h, bool gate_first);

// Activation of a gated MLP (and of a plain one, `activation`); computed in f32.
enum class GateAct {
  silu,
  gelu /* exact: 0.5·x·(1+erf(x/√2)) */,
  gelu_tanh /* PyTorch's approximate='tanh' */,
  relu2 /* relu(x)² */
};

// h: [..., 2n] (rows may be strided views like swiglu accepts) -> [..., n] contiguous.
// gate_first=true: act(h[:n])·h[n:]; false: h[:n]·act(h[n:]). With GateAct::silu this is
// swiglu(h, gate_first) (the same code path, bit for bit).
Tensor gated_act(Exec& exec, const Tensor& h, GateAct act, bool gate_first);

// Elementwise activation (non-gated MLPs, e.g. Nemotron-H's relu²): x [..., n] (rows may be
// strided) -> a new contiguous tensor.
Tensor activation(Exec& exec, const Tensor& x, GateAct act);

// y ← y·silu(z); y contiguous [batch, seq_len, n], z [batch, seq_len, n] (rows may be strided).
void mul_silu_(Exec& exec, Tensor& y, const Tensor& z);

// clamp(softplus(raw + bias), lo, hi): raw [batch, seq_len, n] (rows may be strided), bias [n].
Tensor softplus_bias_clamp(Exec& exec, const Tensor& raw, const Tensor& bias, float lo, float hi);

// [..., n1] ++ [..., n2] -> [..., n1 + n2].
Tensor concat_last(Exec& exec, const Tensor& a, const Tensor& b);

// Rows of `table` [vocab, d] for ids (i64 or i32, any shape) -> [ids..., d]. Throws
// Error(out_of_range) naming the position for an id outside [0, vocab).
Tensor embedding(Exec& exec, const Tensor& ids, const Tensor& table);

// −exp(x) elementwise (A = −exp(A_log)) -> a new contiguous f32 tensor on x's device (f32 x). On
// CUDA it runs on the device, so refreshing A after each optimizer step needs no host round trip.
Tensor neg_exp(Exec& exec, const Tensor& x);

// ---- Backward (elementwise_bwd.cpp). Input gradients are returned as new contiguous tensors. ----

// d/dh of swiglu: dout [..., n], h [..., 2n] -> dh [..., 2n].
Tensor swiglu_bwd(Exec& exec, const Tensor& dout, const Tensor& h, bool gate_first);

// d/dh of gated_act: dout [..., n], h [..., 2n] -> dh [..., 2n] (GateAct::silu: swiglu_bwd).
Tensor gated_act_bwd(Exec& exec, const Tensor& dout, const Tensor& h, GateAct act, bool gate_first);

// d/dx of activation: dout [..., n], x [..., n] (rows may be strided) -> dx [..., n].
Tensor activation_bwd(Exec& exec, const Tensor& dout, const Tensor& x, GateAct act);

// Of out = y·silu(z) with y the value before the gate: sets dy = dout·silu(z), dz = dout·y·silu'(z)
// ([batch, seq_len, n]; y, z may have strided rows).
void mul_silu_bwd(Exec& exec, const Tensor& dout, const Tensor& y, const Tensor& z, Tensor& dy, Tensor& dz);

// Returns d raw [batch, seq_len, n] and accumulates dbias [n]; the clamp passes the gradient where
// lo ≤ softplus(raw + bias) ≤ hi (PyTorch's clamp), softplus' = σ below the threshold 20.
Tensor softplus_bias_clamp_bwd(Exec& exec, const Tensor& dout, const Tensor& raw, const Tensor& bias,
                               float lo, float hi, Tensor& dbias);

// Scatter-add: dtable[ids[i]] += dout[i] (dout: [ids..., d], dtable: [vocab, d]). A CUDA table
// with host ids checks them (Error(out_of_range)); device ids are not read back (no host sync in
// the training step; the forward's embedding checked them) and an id outside the table is skipped.
void embedding_bwd(Exec& exec, const Tensor& ids, const Tensor& dout, Tensor& dtable);

// Of A = −exp(A_log), given A: dA_log += dA·A (same shapes).
void neg_exp_bwd(Exec& exec, const Tensor& dA, const Tensor& A, Tensor& dA_log);

}  // namespace mamba::ops
