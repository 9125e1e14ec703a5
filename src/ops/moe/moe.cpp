// Front of MoE: the router's and the experts' checks, and the expert pipeline both devices share:
// sort the T·k (token, slot) pairs by expert, gather their rows, two ops::linear per expert with
// the activation between (over all routed rows at once), then the weighted combination per token
// in slot order. The steps between the GEMMs and the router run as CPU kernels (moe_cpu.cpp) or
// CUDA ones (moe_cuda.cu) through the kernel table.
#include "ops/moe/moe.h"

#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/linear/linear.h"
#include "ops/moe/moe_params.h"

namespace mamba::ops {

namespace {

// ---- Router ----

void check_router(const Tensor& logits, const MoeRouterParams& p) {
  if (logits.dim() != 2 || logits.dtype() != DType::f32)
    throw_error(ErrorCode::shape, "moe_route: logits must be f32 [T, E], got ", dtype_name(logits.dtype()),
                " ", shape_str(logits.shape()));
  const int64_t n = logits.size(1);
  if (p.top_k < 1 || p.top_k > n)
    throw_error(ErrorCode::invalid_argument, "moe_route: top_k ", p.top_k, " outside [1, ", n, "]");
  if (p.kind == MoeRouter::sigmoid_grouped) {
    if (p.n_group < 1 || p.n_group > 32 || n % p.n_group != 0 || p.topk_group < 1 || p.topk_group > p.n_group)
      throw_error(ErrorCode::invalid_argument, "moe_route: n_group ", p.n_group, " / topk_group ",
                  p.topk_group, " invalid for ", n,
                  " experts (n_group divides E, at most 32; 1 <= topk_group <= n_group)");
    if (p.correction_bias.defined() &&
        (p.correction_bias.numel() != n || p.correction_bias.dtype() != DType::f32 ||
         p.correction_bias.device() != logits.device()))
      throw_error(ErrorCode::shape, "moe_route: correction_bias must be f32 [", n, "] on the logits' device");
  }
}

bool gated(MoeActivation act) {
  return act != MoeActivation::relu2;
}

// ---- Device dispatch of the pipeline's steps (CPU kernels: moe_cpu.cpp) ----

bool on_cuda(const Tensor& t) {
  return t.device() == Device::cuda;
}

std::vector<int64_t> sort(const Tensor& experts, int64_t n_experts, Tensor& rows_of, Tensor& pos_of) {
  if (!on_cuda(experts)) return cpu::moe_sort(experts, n_experts, rows_of, pos_of);
  return cuda_kernels().moe.sort(experts, n_experts, rows_of, pos_of);
}

void gather(const Tensor& src, const Tensor& rows_of, const Tensor& weights, int64_t k, Tensor& out) {
  if (!on_cuda(src)) return cpu::moe_gather(src, rows_of, weights, k, out);
  cuda_kernels().moe.gather(src, rows_of, weights, k, out);
}

void combine(const Tensor& rows, const Tensor& pos_of, const Tensor& weights, int64_t k, Tensor& y) {
  if (!on_cuda(rows)) return cpu::moe_combine(rows, pos_of, weights, k, y);
  cuda_kernels().moe.combine(rows, pos_of, weights, k, y);
}

void activation(const Tensor& h, MoeActivation act, Tensor& a) {
  if (!on_cuda(h)) return cpu::moe_act(h, act, a);
  cuda_kernels().moe.act(h, act, a);
}

void activation_bwd(const Tensor& da, const Tensor& h, MoeActivation act, Tensor& dh) {
  if (!on_cuda(h)) return cpu::moe_act_bwd(da, h, act, dh);
  cuda_kernels().moe.act_bwd(da, h, act, dh);
}

void dweights_of(const Tensor& dy, const Tensor& o, const Tensor& pos_of, int64_t k, Tensor& dweights) {
  if (!on_cuda(dy)) return cpu::moe_dweights(dy, o, pos_of, k, dweights);
  cuda_kernels().moe.dweights(dy, o, pos_of, k, dweights);
}

// Shapes of the expert weights: (I, width of h).
std::pair<int64_t, int64_t> check_experts(const Tensor& x, const MoeRouting& r, const MoeExperts& e) {
  if (x.dim() != 2 || x.dtype() != DType::f32)
    throw_error(ErrorCode::shape, "moe_experts: x must be f32 [T, D], got ", shape_str(x.shape()));
  const int64_t tokens = x.size(0), d = x.size(1);
  if (!r.experts.defined() || !r.weights.defined() || r.experts.dim() != 2 ||
      r.experts.dtype() != DType::i32 || r.weights.dtype() != DType::f32 ||
      r.experts.shape() != r.weights.shape() || r.experts.size(0) != tokens)
    throw_error(ErrorCode::shape, "moe_experts: routing must be i32 / f32 [", tokens, ", k]");
  if (r.experts.device() != x.device() || r.weights.device() != x.device())
    throw_error(ErrorCode::invalid_argument, "moe_experts: routing and x on different devices");
  if (e.w_in.empty() || e.w_in.size() != e.w_out.size())
    throw_error(ErrorCode::invalid_argument, "moe_experts: ", e.w_in.size(), " w_in and ", e.w_out.size(),
                " w_out");
  const int64_t hw = e.w_in[0].dim() == 2 ? e.w_in[0].size(0) : 0;
  const int64_t inter = gated(e.act) ? hw / 2 : hw;
  for (size_t i = 0; i < e.w_in.size(); ++i) {
    const Tensor &wi = e.w_in[i], &wo = e.w_out[i];
    if (wi.shape() != Shape{hw, d} || wo.shape() != Shape{d, inter} || inter == 0 ||
        (gated(e.act) && hw % 2 != 0))
      throw_error(ErrorCode::shape, "moe_experts: expert ", i, " w_in ", shape_str(wi.shape()), " w_out ",
                  shape_str(wo.shape()), " for D = ", d, " (all experts alike; gated w_in has 2·I rows)");
    if (wi.device() != x.device() || wo.device() != x.device())
      throw_error(ErrorCode::invalid_argument, "moe_experts: expert ", i, " weights not on x's device");
    if (x.device() == Device::cpu && (wi.dtype() != DType::f32 || wo.dtype() != DType::f32))
      throw_error(ErrorCode::dtype, "moe_experts: CPU expert weights must be f32");
  }
  return {inter, hw};
}

Tensor run_experts(Exec& exec, const Tensor& x_in, const MoeRouting& r, const MoeExperts& e,
                   MoeSaved* saved) {
  const auto [inter, hw] = check_experts(x_in, r, e);
  const Device dev = x_in.device();
  const Tensor x = x_in.contiguous();
  const Tensor experts = r.experts.contiguous(), weights = r.weights.contiguous();
  const int64_t tokens = x.size(0), d = x.size(1), k = experts.size(1), n = tokens * k;
  const int64_t n_experts = static_cast<int64_t>(e.w_in.size());
  Tensor y = Tensor::empty({tokens, d}, DType::f32, dev);
  if (n == 0 || d == 0) {
    y.zero();
    if (saved) {
      *saved = MoeSaved();
      saved->tokens = tokens;
      saved->top_k = k;
      saved->d_model = d;
      saved->counts.assign(static_cast<size_t>(n_experts), 0);
    }
    return y;
  }
  Tensor rows_of, pos_of;
  std::vector<int64_t> counts = sort(experts, n_experts, rows_of, pos_of);
  Tensor xs = Tensor::empty({n, d}, DType::f32, dev);
  gather(x, rows_of, Tensor(), k, xs);
  Tensor h = Tensor::empty({n, hw}, DType::f32, dev);
  int64_t off = 0;
  for (int64_t i = 0; i < n_experts; ++i) {
    if (counts[i] == 0) continue;
    Tensor hv = h.slice(0, off, off + counts[i]);
    linear_into(exec, xs.slice(0, off, off + counts[i]), e.w_in[i], Tensor(), hv);
    off += counts[i];
  }
  Tensor a = Tensor::empty({n, inter}, DType::f32, dev);
  activation(h, e.act, a);
  Tensor o = Tensor::empty({n, d}, DType::f32, dev);
  off = 0;
  for (int64_t i = 0; i < n_experts; ++i) {
    if (counts[i] == 0) continue;
    Tensor ov = o.slice(0, off, off + counts[i]);
    linear_into(exec, a.slice(0, off, off + counts[i]), e.w_out[i], Tensor(), ov);
    off += counts[i];
  }
  combine(o, pos_of, weights, k, y);
  if (saved) {
    saved->tokens = tokens;
    saved->top_k = k;
    saved->d_model = d;
    saved->counts = std::move(counts);
    saved->rows_of = rows_of;
    saved->pos_of = pos_of;
    saved->weights = weights;
    saved->xs = xs;
    saved->h = h;
    saved->a = a;
    saved->o = o;
  }
  return y;
}

}  // namespace

MoeRouting moe_route(Exec& exec, const Tensor& logits_in, const MoeRouterParams& p) {
  check_router(logits_in, p);
  OpScope op_scope(exec, "moe_route", logits_in.device());
  if (logits_in.device() == Device::cuda) return cuda_kernels().moe.route(logits_in, p);
  const Tensor logits = logits_in.contiguous();
  return cpu::moe_route({logits.size(0), logits.size(1), p.top_k}, logits, p);
}

Tensor moe_experts(Exec& exec, const Tensor& x, const MoeRouting& r, const MoeExperts& e) {
  OpScope op_scope(exec, "moe_experts", x.device());
  return run_experts(exec, x, r, e, nullptr);
}

Tensor moe_experts_train(Exec& exec, const Tensor& x, const MoeRouting& r, const MoeExperts& e,
                         MoeSaved& saved) {
  OpScope op_scope(exec, "moe_experts", x.device());
  return run_experts(exec, x, r, e, &saved);
}

Tensor moe_experts_bwd(Exec& exec, const Tensor& dy_in, const MoeSaved& s, const MoeExperts& e,
                       Tensor& dweights, std::vector<Tensor>& dw_in, std::vector<Tensor>& dw_out) {
  OpScope op_scope(exec, "moe_experts_bwd", dy_in.device());
  const Device dev = dy_in.device();
  const int64_t tokens = s.tokens, k = s.top_k, d = s.d_model, n = tokens * k;
  const int64_t n_experts = static_cast<int64_t>(e.w_in.size());
  if (dy_in.shape() != Shape{tokens, d} || dy_in.dtype() != DType::f32)
    throw_error(ErrorCode::shape, "moe_experts_bwd: dy ", shape_str(dy_in.shape()), " for [", tokens, ", ", d,
                "]");
  if (static_cast<int64_t>(s.counts.size()) != n_experts || dw_in.size() != e.w_in.size() ||
      dw_out.size() != e.w_out.size())
    throw_error(ErrorCode::invalid_argument, "moe_experts_bwd: ", n_experts, " experts, ", s.counts.size(),
                " saved counts, ", dw_in.size(), " dw_in, ", dw_out.size(), " dw_out");
  Tensor dx = Tensor::empty({tokens, d}, DType::f32, dev);
  dweights = Tensor::empty({tokens, k}, DType::f32, dev);
  if (n == 0 || d == 0) {
    dx.zero();
    dweights.zero();
    return dx;
  }
  const Tensor dy = dy_in.contiguous();
  dweights_of(dy, s.o, s.pos_of, k, dweights);
  // d o = weight·dy per routed row.
  Tensor d_o = Tensor::empty({n, d}, DType::f32, dev);
  gather(dy, s.rows_of, s.weights, k, d_o);
  Tensor da = Tensor::empty(s.a.shape(), DType::f32, dev);
  Tensor no_bias;
  int64_t off = 0;
  for (int64_t i = 0; i < n_experts; ++i) {
    const int64_t c = s.counts[i];
    if (c == 0) continue;
    Tensor dst = da.slice(0, off, off + c);
    dst.copy_from(linear_bwd(exec, d_o.slice(0, off, off + c), s.a.slice(0, off, off + c), e.w_out[i],
                             dw_out[i], no_bias));
    off += c;
  }
  Tensor dh = Tensor::empty(s.h.shape(), DType::f32, dev);
  activation_bwd(da, s.h, e.act, dh);
  Tensor dxs = Tensor::empty({n, d}, DType::f32, dev);
  off = 0;
  for (int64_t i = 0; i < n_experts; ++i) {
    const int64_t c = s.counts[i];
    if (c == 0) continue;
    Tensor dst = dxs.slice(0, off, off + c);
    dst.copy_from(linear_bwd(exec, dh.slice(0, off, off + c), s.xs.slice(0, off, off + c), e.w_in[i],
                             dw_in[i], no_bias));
    off += c;
  }
  combine(dxs, s.pos_of, Tensor(), k, dx);
  return dx;
}

Tensor moe_route_bwd(Exec& exec, const Tensor& dweights_in, const Tensor& logits_in, const MoeRouting& r,
                     const MoeRouterParams& p) {
  check_router(logits_in, p);
  const int64_t tokens = logits_in.size(0), n = logits_in.size(1), k = p.top_k;
  if (dweights_in.shape() != Shape{tokens, k} || r.experts.shape() != Shape{tokens, k} ||
      dweights_in.dtype() != DType::f32 || r.experts.dtype() != DType::i32)
    throw_error(ErrorCode::shape, "moe_route_bwd: dweights / experts must be f32 / i32 [", tokens, ", ", k,
                "]");
  OpScope op_scope(exec, "moe_route_bwd", logits_in.device());
  if (logits_in.device() == Device::cuda) return cuda_kernels().moe.route_bwd(dweights_in, logits_in, r, p);
  const Tensor logits = logits_in.contiguous(), dweights = dweights_in.contiguous();
  const Tensor experts = r.experts.contiguous();
  const int32_t* ip = experts.data<int32_t>();
  for (int64_t i = 0; i < tokens * k; ++i)
    if (ip[i] < 0 || ip[i] >= n)
      throw_error(ErrorCode::out_of_range, "moe_route_bwd: expert id ", ip[i], " outside [0, ", n, ")");
  return cpu::moe_route_bwd({tokens, n, k}, dweights, logits, experts, p);
}

}  // namespace mamba::ops
