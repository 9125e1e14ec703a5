// MoE's packed router sizes and the CPU kernels its front (moe.cpp) dispatches to (moe_cpu.cpp):
// the router and the steps of the expert pipeline between its GEMMs. The kernels trust their
// inputs (checked by the front), except that moe_sort rejects an expert id outside [0, E) as it
// counts.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/moe/moe.h"

namespace mamba::ops {

// logits [tokens, n_experts]; top_k experts per token.
struct MoeRouteDims {
  int64_t tokens, n_experts, top_k;
};

namespace cpu {

// logits contiguous f32; experts contiguous i32 [tokens, top_k], each in [0, n_experts).
MoeRouting moe_route(const MoeRouteDims& dims, const Tensor& logits, const MoeRouterParams& p);
Tensor moe_route_bwd(const MoeRouteDims& dims, const Tensor& dweights, const Tensor& logits,
                     const Tensor& experts, const MoeRouterParams& p);

// The pipeline's steps over N = T·k routed rows (moe.h's MoeSaved names them): the stable counting
// sort (returns the rows per expert), the gather of token rows (scaled by weights when defined),
// the weighted combination per token in slot order, d weights, and the activation and its backward.
std::vector<int64_t> moe_sort(const Tensor& experts, int64_t n_experts, Tensor& rows_of, Tensor& pos_of);
void moe_gather(const Tensor& src, const Tensor& rows_of, const Tensor& weights, int64_t k, Tensor& out);
void moe_combine(const Tensor& rows, const Tensor& pos_of, const Tensor& weights, int64_t k, Tensor& y);
void moe_dweights(const Tensor& dy, const Tensor& o, const Tensor& pos_of, int64_t k, Tensor& dweights);
void moe_act(const Tensor& h, MoeActivation act, Tensor& a);
void moe_act_bwd(const Tensor& da, const Tensor& h, MoeActivation act, Tensor& dh);

}  // namespace cpu

}  // namespace mamba::ops
