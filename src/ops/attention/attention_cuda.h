// CUDA entry points of attention and rotary (attention_cuda.cu), called by attention.cpp.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

Tensor attention_fwd_cuda(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t pos,
                          float scale);
void rotary_rotate_cuda(Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved,
                        float sign);
// Backward (attention_bwd_cuda.cu), same contract as attention_bwd.
void attention_bwd_cuda(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        Tensor& dq, Tensor& dk, Tensor& dv);

}  // namespace mamba::ops
