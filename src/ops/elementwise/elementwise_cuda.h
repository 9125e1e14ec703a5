// CUDA entry points of the elementwise ops (elementwise_cuda.cu), called by elementwise.cpp.
#pragma once
#include "core/tensor.h"
#include "ops/elementwise/elementwise.h"

namespace mamba::ops {

void add_cuda_(Tensor& a, const Tensor& b);
void scale_cuda_(Tensor& x, float s);
Tensor swiglu_cuda(const Tensor& h, bool gate_first);
Tensor gated_act_cuda(const Tensor& h, GateAct act, bool gate_first);
Tensor activation_cuda(const Tensor& x, GateAct act);
void mul_silu_cuda_(Tensor& y, const Tensor& z);
Tensor softplus_bias_clamp_cuda(const Tensor& raw, const Tensor& bias, float lo, float hi);
Tensor concat_last_cuda(const Tensor& a, const Tensor& b);
Tensor embedding_cuda(const Tensor& ids, const Tensor& table);
Tensor neg_exp_cuda(const Tensor& x);

// Backward (elementwise_bwd_cuda.cu), same contracts as the *_bwd functions of elementwise.h.
Tensor swiglu_bwd_cuda(const Tensor& dout, const Tensor& h, bool gate_first);
Tensor gated_act_bwd_cuda(const Tensor& dout, const Tensor& h, GateAct act, bool gate_first);
Tensor activation_bwd_cuda(const Tensor& dout, const Tensor& x, GateAct act);
void mul_silu_bwd_cuda(const Tensor& dout, const Tensor& y, const Tensor& z, Tensor& dy, Tensor& dz);
Tensor softplus_bias_clamp_bwd_cuda(const Tensor& dout, const Tensor& raw, const Tensor& bias, float lo,
                                    float hi, Tensor& dbias);
void embedding_bwd_cuda(const Tensor& ids, const Tensor& dout, Tensor& dtable);
void neg_exp_bwd_cuda(const Tensor& dA, const Tensor& A, Tensor& dA_log);

}  // namespace mamba::ops
