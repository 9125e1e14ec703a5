// MoE steps on CUDA. The router runs one warp per token (scores in shared memory, k passes of a
// warp arg-max in top-k order, the k-value arithmetic of moe_common.h on lane 0, as on the CPU).
// The sort is a count (atomics; the counts go to the host for the GEMM shapes) then one block per
// expert that ranks its slots in slot order with ballots, so the order is the CPU's stable order.
// Gather, combination (slot order per token), activation and their backward are plain row kernels.
#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/moe/moe.h"
#include "ops/moe/moe_common.h"

namespace mamba::ops {

namespace {

using moe_detail::after;

constexpr int kRouteWarps = 4;  // tokens per block of the router kernels
constexpr int kRowThreads = 128;
constexpr unsigned kFull = 0xffffffffu;

struct RouteArgs {
  const float* logits;
  const float* bias;  // may be null
  int32_t* experts;
  float* weights;
  int64_t tokens, n, k, n_group, topk_group;
  MoeRouter kind;
  bool norm;
  float scale;
};

// One warp per token; shared memory per warp: n scores + 32 group scores.
__global__ void route_kernel(const RouteArgs a) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t = int64_t(blockIdx.x) * kRouteWarps + warp;
  if (t >= a.tokens) return;  // warp-uniform
  const int64_t n = a.n;
  const float* l = a.logits + t * n;
  float* vals = smem + warp * (n + 32);
  float* gscore = vals + n;
  const float* v = vals;
  if (a.kind == MoeRouter::softmax_topk) {
    float m = -INFINITY;
    for (int64_t e = lane; e < n; e += 32) m = fmaxf(m, l[e]);
    m = mamba::cuda::warp_max(m);
    float s = 0.0f;
    for (int64_t e = lane; e < n; e += 32) {
      vals[e] = expf(l[e] - m);
      s += vals[e];
    }
    s = mamba::cuda::warp_sum(s);
    for (int64_t e = lane; e < n; e += 32) vals[e] /= s;
    __syncwarp();
  } else if (a.kind == MoeRouter::topk_softmax) {
    v = l;
  } else {
    for (int64_t e = lane; e < n; e += 32)
      vals[e] = mamba::cuda::sigmoid_f(l[e]) + (a.bias ? a.bias[e] : 0.0f);
    __syncwarp();
    if (a.topk_group < a.n_group) {
      const int64_t gs = n / a.n_group;
      if (lane < a.n_group) gscore[lane] = moe_detail::group_score(vals + lane * gs, gs);
      __syncwarp();
      bool keep = false;
      if (lane < a.n_group) {
        int64_t rank = 0;
        for (int64_t h = 0; h < a.n_group; ++h) rank += after(gscore[lane], lane, gscore[h], h) ? 1 : 0;
        keep = rank < a.topk_group;
      }
      const unsigned kept = __ballot_sync(kFull, keep);
      for (int64_t e = lane; e < n; e += 32)
        if (!((kept >> (e / gs)) & 1u)) vals[e] = 0.0f;
      __syncwarp();
    }
  }
  float pv = 0.0f;
  int64_t pi = -1;
  for (int64_t j = 0; j < a.k; ++j) {
    float bv = 0.0f;
    int64_t bi = -1;
    for (int64_t e = lane; e < n; e += 32) {
      const float x = v[e];
      if (isnan(x) || (pi >= 0 && !after(x, e, pv, pi))) continue;
      if (bi < 0 || x > bv) {
        bi = e;
        bv = x;
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(kFull, bv, off);
      const int64_t oi = __shfl_xor_sync(kFull, bi, off);
      if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      a.experts[t * a.k + j] = static_cast<int32_t>(bi);
      a.weights[t * a.k + j] =
          bi < 0 ? 0.0f : (a.kind == MoeRouter::sigmoid_grouped ? mamba::cuda::sigmoid_f(l[bi]) : v[bi]);
    }
    if (bi >= 0) {
      pv = bv;
      pi = bi;
    }
  }
  if (lane == 0) moe_detail::finish_weights(a.kind, a.norm, a.scale, a.k, a.weights + t * a.k);
}

struct RouteBwdArgs {
  const float* dweights;
  const float* logits;
  const int32_t* experts;
  float* dlogits;
  int64_t tokens, n, k;
  MoeRouter kind;
  bool norm;
  float scale;
};

// One warp per token; shared memory per warp: q [k] and dq [k]. Out-of-range ids are skipped.
__global__ void route_bwd_kernel(const RouteBwdArgs a) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t = int64_t(blockIdx.x) * kRouteWarps + warp;
  if (t >= a.tokens) return;
  const int64_t n = a.n, k = a.k;
  const float* l = a.logits + t * n;
  const int32_t* idx = a.experts + t * k;
  float* g = a.dlogits + t * n;
  float* q = smem + warp * 2 * k;
  float* dq = q + k;
  auto valid = [&](int64_t j) { return idx[j] >= 0 && idx[j] < n; };
  float m = -INFINITY, s = 0.0f;
  if (a.kind == MoeRouter::softmax_topk) {
    for (int64_t e = lane; e < n; e += 32) m = fmaxf(m, l[e]);
    m = mamba::cuda::warp_max(m);
    for (int64_t e = lane; e < n; e += 32) s += expf(l[e] - m);
    s = mamba::cuda::warp_sum(s);
    for (int64_t j = lane; j < k; j += 32) q[j] = valid(j) ? expf(l[idx[j]] - m) / s : 0.0f;
  } else if (a.kind == MoeRouter::topk_softmax) {
    for (int64_t j = lane; j < k; j += 32)
      if (valid(j)) m = fmaxf(m, l[idx[j]]);
    m = mamba::cuda::warp_max(m);
    for (int64_t j = lane; j < k; j += 32) {
      q[j] = valid(j) ? expf(l[idx[j]] - m) : 0.0f;
      s += q[j];
    }
    s = mamba::cuda::warp_sum(s);
    for (int64_t j = lane; j < k; j += 32) q[j] /= s;
  } else {
    for (int64_t j = lane; j < k; j += 32) q[j] = valid(j) ? mamba::cuda::sigmoid_f(l[idx[j]]) : 0.0f;
  }
  __syncwarp();
  float c = 0.0f;
  if (lane == 0) c = moe_detail::weights_bwd(a.kind, a.norm, a.scale, k, q, a.dweights + t * k, dq);
  c = __shfl_sync(kFull, c, 0);
  __syncwarp();
  for (int64_t e = lane; e < n; e += 32)
    g[e] = a.kind == MoeRouter::softmax_topk ? -expf(l[e] - m) / s * c : 0.0f;
  __syncwarp();
  for (int64_t j = lane; j < k; j += 32) {
    if (!valid(j)) continue;
    g[idx[j]] = a.kind == MoeRouter::sigmoid_grouped ? dq[j] * q[j] * (1.0f - q[j]) : q[j] * (dq[j] - c);
  }
}

// counts[id] += 1 per slot; ids outside [0, n_experts) count in bin n_experts.
__global__ void count_kernel(const int32_t* ids, int64_t n, int64_t n_experts, int* counts) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    const int32_t e = ids[i];
    atomicAdd(counts + ((e >= 0 && e < n_experts) ? e : n_experts), 1);
  }
}

// Block e places expert e's slots at its offset, in slot order (ballot prefix counts per chunk).
__global__ void rank_kernel(const int32_t* ids, int64_t n, const int* counts, int32_t* rows_of,
                            int32_t* pos_of) {
  __shared__ int warp_count[32];
  __shared__ int64_t base_shared;
  const int e = blockIdx.x;
  if (counts[e] == 0) return;  // block-uniform
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  if (threadIdx.x == 0) {
    int64_t b = 0;
    for (int i = 0; i < e; ++i) b += counts[i];
    base_shared = b;
  }
  __syncthreads();
  int64_t base = base_shared;
  for (int64_t c = 0; c < n; c += blockDim.x) {
    const int64_t i = c + threadIdx.x;
    const bool match = i < n && ids[i] == e;
    const unsigned ballot = __ballot_sync(kFull, match);
    if (lane == 0) warp_count[warp] = __popc(ballot);
    __syncthreads();
    int64_t off = 0, total = 0;
    for (int w = 0; w < n_warps; ++w) {
      off += w < warp ? warp_count[w] : 0;
      total += warp_count[w];
    }
    if (match) {
      const int64_t p = base + off + __popc(ballot & ((1u << lane) - 1u));
      rows_of[p] = static_cast<int32_t>(i);
      pos_of[i] = static_cast<int32_t>(p);
    }
    base += total;
    __syncthreads();
  }
}

// out[p, :] = scale·src[rows_of[p] / k, :]; one block per row (grid-stride).
__global__ void gather_kernel(const float* src, const int32_t* rows_of, const float* weights, int64_t k,
                              int64_t rows, int64_t d, float* out) {
  for (int64_t p = blockIdx.x; p < rows; p += gridDim.x) {
    const int64_t slot = rows_of[p];
    const float* s = src + (slot / k) * d;
    const float scale = weights ? weights[slot] : 1.0f;
    float* o = out + p * d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) o[i] = weights ? scale * s[i] : s[i];
  }
}

// y[t, :] = Σ_j scale_j·rows[pos_of[t·k + j], :] in slot order; one block per token (grid-stride).
__global__ void combine_kernel(const float* rows, const int32_t* pos_of, const float* weights, int64_t k,
                               int64_t tokens, int64_t d, float* y) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float acc = 0.0f;
      for (int64_t j = 0; j < k; ++j) {
        const float scale = weights ? weights[t * k + j] : 1.0f;
        acc += scale * rows[static_cast<int64_t>(pos_of[t * k + j]) * d + i];
      }
      y[t * d + i] = acc;
    }
  }
}

// dweights[slot] = <dy[slot / k], o[pos_of[slot]]>; one warp per slot.
__global__ void dweights_kernel(const float* dy, const float* o, const int32_t* pos_of, int64_t k,
                                int64_t slots, int64_t d, float* dweights) {
  const int lane = threadIdx.x & 31;
  const int64_t slot = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (slot >= slots) return;
  const float* a = dy + (slot / k) * d;
  const float* b = o + static_cast<int64_t>(pos_of[slot]) * d;
  float acc = 0.0f;
  for (int64_t i = lane; i < d; i += 32) acc += a[i] * b[i];
  acc = mamba::cuda::warp_sum(acc);
  if (lane == 0) dweights[slot] = acc;
}

__device__ __forceinline__ float gelu_f(float v) {
  return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}
__device__ __forceinline__ float gelu_grad_f(float v) {
  const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
  return cdf + v * 0.39894228040143268f * expf(-0.5f * v * v);
}
__device__ __forceinline__ float silu_grad_f(float v) {
  const float s = mamba::cuda::sigmoid_f(v);
  return s * (1.0f + v * (1.0f - s));
}

// a[r, i] = act(h[r, :]) for i < inter; h rows of width hw (2·inter when gated).
__global__ void act_kernel(const float* h, MoeActivation act, int64_t rows, int64_t inter, int64_t hw,
                           float* a) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * inter) {
    const int64_t r = idx / inter, i = idx - r * inter;
    const float* hr = h + r * hw;
    float out;
    switch (act) {
      case MoeActivation::swiglu:
        out = mamba::cuda::silu_f(hr[i]) * hr[inter + i];
        break;
      case MoeActivation::gelu_gated:
        out = gelu_f(hr[i]) * hr[inter + i];
        break;
      default: {
        const float v = fmaxf(hr[i], 0.0f);
        out = v * v;
      }
    }
    a[idx] = out;
  }
}

__global__ void act_bwd_kernel(const float* da, const float* h, MoeActivation act, int64_t rows,
                               int64_t inter, int64_t hw, float* dh) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * inter) {
    const int64_t r = idx / inter, i = idx - r * inter;
    const float* hr = h + r * hw;
    float* dhr = dh + r * hw;
    const float g = da[idx];
    switch (act) {
      case MoeActivation::swiglu:
        dhr[i] = g * hr[inter + i] * silu_grad_f(hr[i]);
        dhr[inter + i] = g * mamba::cuda::silu_f(hr[i]);
        break;
      case MoeActivation::gelu_gated:
        dhr[i] = g * hr[inter + i] * gelu_grad_f(hr[i]);
        dhr[inter + i] = g * gelu_f(hr[i]);
        break;
      default:
        dhr[i] = g * 2.0f * fmaxf(hr[i], 0.0f);
    }
  }
}

unsigned int row_blocks(int64_t rows) {
  return static_cast<unsigned int>(std::clamp<int64_t>(rows, 1, int64_t(1) << 20));
}

void check_i32(const Tensor& t, int64_t n, const char* name) {
  mamba::cuda::check_cuda_tensor(t, name);
  MAMBA_CHECK(t.dtype() == DType::i32 && t.is_contiguous() && t.numel() == n,
              name << " " << shape_str(t.shape()));
}

void check_f32(const Tensor& t, const char* name) {
  mamba::cuda::check_cuda_tensor(t, name);
  MAMBA_CHECK(t.dtype() == DType::f32 && t.is_contiguous(), name << " " << shape_str(t.shape()));
}

}  // namespace

MoeRouting moe_route_cuda(const Tensor& logits_in, const MoeRouterParams& p) {
  mamba::cuda::check_cuda_tensor(logits_in, "moe_route: logits");
  const Tensor logits = logits_in.contiguous();
  const int64_t tokens = logits.size(0), n = logits.size(1), k = p.top_k;
  if (n > 2048) throw_error(ErrorCode::unsupported, "moe_route: ", n, " experts on CUDA (at most 2048)");
  MoeRouting r{Tensor::empty({tokens, k}, DType::i32, Device::cuda),
               Tensor::empty({tokens, k}, DType::f32, Device::cuda)};
  if (tokens == 0) return r;
  Tensor bias;
  if (p.kind == MoeRouter::sigmoid_grouped && p.correction_bias.defined()) {
    bias = p.correction_bias.contiguous();
    mamba::cuda::check_cuda_tensor(bias, "moe_route: correction_bias");
  }
  const RouteArgs a{logits.f32(),
                    bias.defined() ? bias.f32() : nullptr,
                    r.experts.data<int32_t>(),
                    r.weights.f32(),
                    tokens,
                    n,
                    k,
                    p.n_group,
                    p.topk_group,
                    p.kind,
                    p.norm_topk,
                    p.routed_scaling};
  const size_t smem = sizeof(float) * kRouteWarps * static_cast<size_t>(n + 32);
  route_kernel<<<mamba::cuda::ceil_div(tokens, kRouteWarps), kRouteWarps * 32, smem, mamba::cuda::stream()>>>(
      a);
  CUDA_CHECK_LAUNCH();
  return r;
}

Tensor moe_route_bwd_cuda(const Tensor& dweights_in, const Tensor& logits_in, const MoeRouting& r,
                          const MoeRouterParams& p) {
  mamba::cuda::check_cuda_tensor(logits_in, "moe_route_bwd: logits");
  const Tensor logits = logits_in.contiguous(), dweights = dweights_in.contiguous();
  const Tensor experts = r.experts.contiguous();
  const int64_t tokens = logits.size(0), n = logits.size(1), k = p.top_k;
  check_f32(dweights, "moe_route_bwd: dweights");
  check_i32(experts, tokens * k, "moe_route_bwd: experts");
  if (k > 4096) throw_error(ErrorCode::unsupported, "moe_route_bwd: top_k ", k, " on CUDA (at most 4096)");
  Tensor dl = Tensor::empty({tokens, n}, DType::f32, Device::cuda);
  if (tokens == 0) return dl;
  const RouteBwdArgs a{dweights.f32(), logits.f32(), experts.data<int32_t>(), dl.f32(), tokens, n, k,
                       p.kind,         p.norm_topk,  p.routed_scaling};
  const size_t smem = sizeof(float) * kRouteWarps * 2 * static_cast<size_t>(k);
  route_bwd_kernel<<<mamba::cuda::ceil_div(tokens, kRouteWarps), kRouteWarps * 32, smem,
                     mamba::cuda::stream()>>>(a);
  CUDA_CHECK_LAUNCH();
  return dl;
}

std::vector<int64_t> moe_sort_cuda(const Tensor& experts, int64_t n_experts, Tensor& rows_of,
                                   Tensor& pos_of) {
  const int64_t n = experts.numel();
  check_i32(experts, n, "moe_experts: experts");
  MAMBA_CHECK(n < (int64_t(1) << 31) && n_experts < (int64_t(1) << 31));
  Tensor counts = Tensor::zeros({n_experts + 1}, DType::i32, Device::cuda);
  count_kernel<<<mamba::cuda::grid_for(n), 256, 0, mamba::cuda::stream()>>>(
      experts.data<int32_t>(), n, n_experts, counts.data<int32_t>());
  CUDA_CHECK_LAUNCH();
  const Tensor host = counts.to(Device::cpu);  // waits for the count
  const int32_t* hc = host.data<int32_t>();
  if (hc[n_experts] != 0)
    throw_error(ErrorCode::out_of_range, "moe_experts: ", hc[n_experts], " expert ids outside [0, ",
                n_experts, ")");
  rows_of = Tensor::empty({n}, DType::i32, Device::cuda);
  pos_of = Tensor::empty({n}, DType::i32, Device::cuda);
  rank_kernel<<<static_cast<unsigned int>(n_experts), 256, 0, mamba::cuda::stream()>>>(
      experts.data<int32_t>(), n, counts.data<int32_t>(), rows_of.data<int32_t>(), pos_of.data<int32_t>());
  CUDA_CHECK_LAUNCH();
  return std::vector<int64_t>(hc, hc + n_experts);
}

void moe_gather_cuda(const Tensor& src, const Tensor& rows_of, const Tensor& weights, int64_t k,
                     Tensor& out) {
  check_f32(src, "moe gather: src");
  check_f32(out, "moe gather: out");
  const int64_t rows = rows_of.numel(), d = src.size(-1);
  check_i32(rows_of, rows, "moe gather: rows_of");
  MAMBA_CHECK(out.numel() == rows * d);
  if (weights.defined()) check_f32(weights, "moe gather: weights");
  if (rows == 0 || d == 0) return;
  gather_kernel<<<row_blocks(rows), kRowThreads, 0, mamba::cuda::stream()>>>(
      src.f32(), rows_of.data<int32_t>(), weights.defined() ? weights.f32() : nullptr, k, rows, d, out.f32());
  CUDA_CHECK_LAUNCH();
}

void moe_combine_cuda(const Tensor& rows, const Tensor& pos_of, const Tensor& weights, int64_t k, Tensor& y) {
  check_f32(rows, "moe combine: rows");
  check_f32(y, "moe combine: y");
  const int64_t tokens = y.size(0), d = y.size(-1);
  check_i32(pos_of, tokens * k, "moe combine: pos_of");
  if (weights.defined()) check_f32(weights, "moe combine: weights");
  if (tokens == 0 || d == 0) return;
  combine_kernel<<<row_blocks(tokens), kRowThreads, 0, mamba::cuda::stream()>>>(
      rows.f32(), pos_of.data<int32_t>(), weights.defined() ? weights.f32() : nullptr, k, tokens, d, y.f32());
  CUDA_CHECK_LAUNCH();
}

void moe_dweights_cuda(const Tensor& dy, const Tensor& o, const Tensor& pos_of, int64_t k, Tensor& dweights) {
  check_f32(dy, "moe_experts_bwd: dy");
  check_f32(o, "moe_experts_bwd: o");
  check_f32(dweights, "moe_experts_bwd: dweights");
  const int64_t slots = pos_of.numel(), d = dy.size(-1);
  check_i32(pos_of, slots, "moe_experts_bwd: pos_of");
  if (slots == 0) return;
  constexpr int kThreads = 256;
  dweights_kernel<<<mamba::cuda::ceil_div(slots * 32, kThreads), kThreads, 0, mamba::cuda::stream()>>>(
      dy.f32(), o.f32(), pos_of.data<int32_t>(), k, slots, d, dweights.f32());
  CUDA_CHECK_LAUNCH();
}

void moe_act_cuda(const Tensor& h, MoeActivation act, Tensor& a) {
  check_f32(h, "moe activation: h");
  check_f32(a, "moe activation: a");
  const int64_t rows = a.size(0), inter = a.size(-1), hw = h.size(-1);
  if (rows * inter == 0) return;
  act_kernel<<<mamba::cuda::grid_for(rows * inter), 256, 0, mamba::cuda::stream()>>>(h.f32(), act, rows,
                                                                                     inter, hw, a.f32());
  CUDA_CHECK_LAUNCH();
}

void moe_act_bwd_cuda(const Tensor& da, const Tensor& h, MoeActivation act, Tensor& dh) {
  check_f32(da, "moe activation bwd: da");
  check_f32(h, "moe activation bwd: h");
  check_f32(dh, "moe activation bwd: dh");
  const int64_t rows = da.size(0), inter = da.size(-1), hw = h.size(-1);
  if (rows * inter == 0) return;
  act_bwd_kernel<<<mamba::cuda::grid_for(rows * inter), 256, 0, mamba::cuda::stream()>>>(
      da.f32(), h.f32(), act, rows, inter, hw, dh.f32());
  CUDA_CHECK_LAUNCH();
}

}  // namespace mamba::ops
