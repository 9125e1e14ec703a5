// Mixture of Experts (Mixtral / Jamba, Granite-MoE, Nemotron-H / DeepSeek-V3): the router (softmax
// or sigmoid scores, top-k, optional grouped selection and renormalization) and the routed experts,
// whose GEMMs run grouped by expert (ops::linear per expert over the rows routed to it). A shared
// expert, the router GEMM (logits = linear(x, router_weight)) and the residual are the caller's.
// All math is f32; expert weights are f32, or bf16 / f16 on CUDA (ops::linear rounds x to the
// weight's dtype there). Tensors of one call live on one device; the outputs are on that device.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

enum class MoeRouter {
  // Mixtral / Jamba: p = softmax(logits over all E); the top-k of p; weights = p[top-k].
  softmax_topk,
  // Granite-MoE: the top-k of the logits; weights = softmax over those k logits.
  topk_softmax,
  // Nemotron-H / DeepSeek-V3: s = sigmoid(logits); choice = s + correction_bias; the experts form
  // n_group groups of E/n_group, scored by the sum of the top-2 `choice` values of the group
  // (the top-1 for groups of one); the topk_group best groups are kept, the others' choice set to
  // 0; the top-k of choice are the experts; weights = s[experts] (not choice).
  sigmoid_grouped,
};

struct MoeRouterParams {
  MoeRouter kind = MoeRouter::softmax_topk;
  int64_t top_k = 2;
  // weights /= Σ weights (+ 1e-20 for sigmoid_grouped, as DeepSeek-V3), any router.
  bool norm_topk = false;
  // weights *= routed_scaling after the normalization, any router (1 = none).
  float routed_scaling = 1.f;
  int64_t n_group = 1, topk_group = 1;  // sigmoid_grouped: n_group divides E, at most 32
  Tensor correction_bias;               // [E] f32, sigmoid_grouped only; undefined = zeros
};

// Ties in every top-k pick the lower index; the experts of a token come in decreasing score
// (slot 0 is the best). NaN scores are never picked (a token left short gets expert -1, which
// moe_experts rejects).
struct MoeRouting {
  Tensor experts;  // i32 [T, k]
  Tensor weights;  // f32 [T, k]
};

// logits: [T, E] f32 (the caller's router GEMM). Outputs on the logits' device.
MoeRouting moe_route(Exec& exec, const Tensor& logits, const MoeRouterParams& p);

enum class MoeActivation {
  swiglu,      // silu(gate)·up (gated)
  relu2,       // relu(h)² (not gated)
  gelu_gated,  // gelu(gate)·up, exact (erf) gelu
};

struct MoeExperts {
  // Per expert, all of one shape: gated [2·I, D], rows = [gate ; up] (gate first); relu2 [I, D].
  std::vector<Tensor> w_in;
  std::vector<Tensor> w_out;  // per expert [D, I]
  MoeActivation act = MoeActivation::swiglu;
};

// x: [T, D] f32; returns y [T, D] = Σ_j weights[t, j]·expert_{experts[t, j]}(x[t]), the k terms
// added in slot order j = 0..k-1 (so the devices agree to rounding). Tokens are grouped by expert
// (a stable counting sort), experts without tokens skipped. On CUDA the sort, gather, activation and
// combination are kernels; the per-expert token counts come to the host once per call (the GEMM
// shapes), so the call synchronizes once and cannot be captured in a DeviceGraph. An expert id
// outside [0, E) throws Error(out_of_range).
Tensor moe_experts(Exec& exec, const Tensor& x, const MoeRouting& r, const MoeExperts& e);

// ---- Training (backward). ----

// What moe_experts_train keeps for moe_experts_bwd. N = T·k routed rows, in expert order.
struct MoeSaved {
  int64_t tokens = 0, top_k = 0, d_model = 0;
  std::vector<int64_t> counts;  // rows per expert (host)
  Tensor rows_of;               // i32 [N]: routed row p is slot t·k + j
  Tensor pos_of;                // i32 [T·k]: the inverse, slot -> routed row
  Tensor weights;               // f32 [T, k] (the routing's)
  Tensor xs;                    // [N, D] gathered inputs
  Tensor h;                     // [N, 2I or I] pre-activation
  Tensor a;                     // [N, I] activation
  Tensor o;                     // [N, D] expert outputs (unweighted)
};

// moe_experts, keeping what the backward needs in `saved`.
Tensor moe_experts_train(Exec& exec, const Tensor& x, const MoeRouting& r, const MoeExperts& e,
                         MoeSaved& saved);

// dy [T, D] -> dx [T, D] (the expert path only). Sets dweights to a new f32 [T, k] (d loss / d
// routing weights) and accumulates into dw_in[e], dw_out[e] (f32, shaped like the weights,
// zeroed by the caller) for every expert that received rows.
Tensor moe_experts_bwd(Exec& exec, const Tensor& dy, const MoeSaved& saved, const MoeExperts& e,
                       Tensor& dweights, std::vector<Tensor>& dw_in, std::vector<Tensor>& dw_out);

// d logits [T, E] from d weights [T, k] for the router that produced `r` from `logits`. The
// selection is piecewise constant: the gradient flows through the selected values only (for
// sigmoid_grouped through s[experts], with the normalization and scaling); the correction bias
// gets none.
Tensor moe_route_bwd(Exec& exec, const Tensor& dweights, const Tensor& logits, const MoeRouting& r,
                     const MoeRouterParams& p);

}  // namespace mamba::ops
