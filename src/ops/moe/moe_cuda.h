// CUDA kernels of the MoE op (moe_cuda.cu), called by moe.cpp for CUDA tensors. moe.cpp runs the
// per-expert GEMMs (ops::linear) between them; these are the small steps around the GEMMs. All
// index tensors are i32, contiguous, on the device.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/moe/moe.h"

namespace mamba::ops {

// moe_route on the device: one warp per token.
MoeRouting moe_route_cuda(const Tensor& logits, const MoeRouterParams& p);
Tensor moe_route_bwd_cuda(const Tensor& dweights, const Tensor& logits, const MoeRouting& r,
                          const MoeRouterParams& p);

// Stable counting sort of the N = T·k slots by expert: returns the rows per expert (host; one
// device -> host copy), sets rows_of [N] (routed row -> slot) and pos_of [N] (slot -> routed row).
// Throws Error(out_of_range) for an expert id outside [0, n_experts).
std::vector<int64_t> moe_sort_cuda(const Tensor& experts, int64_t n_experts, Tensor& rows_of, Tensor& pos_of);

// out[p, :] = scale·src[rows_of[p] / k, :] with scale = weights[rows_of[p]] (1 when weights is
// undefined). src [T, D] f32 contiguous; out [N, D].
void moe_gather_cuda(const Tensor& src, const Tensor& rows_of, const Tensor& weights, int64_t k, Tensor& out);

// y[t, :] = Σ_j scale_j·rows[pos_of[t·k + j], :] in order j = 0..k-1, scale_j = weights[t, j] (1 when
// undefined). rows [N, D]; y [T, D].
void moe_combine_cuda(const Tensor& rows, const Tensor& pos_of, const Tensor& weights, int64_t k, Tensor& y);

// dweights[t, j] = Σ_d dy[t, d]·o[pos_of[t·k + j], d].
void moe_dweights_cuda(const Tensor& dy, const Tensor& o, const Tensor& pos_of, int64_t k, Tensor& dweights);

// a = act(h): h [N, 2I] (gated) or [N, I]; a [N, I]. And dh from da.
void moe_act_cuda(const Tensor& h, MoeActivation act, Tensor& a);
void moe_act_bwd_cuda(const Tensor& da, const Tensor& h, MoeActivation act, Tensor& dh);

}  // namespace mamba::ops
