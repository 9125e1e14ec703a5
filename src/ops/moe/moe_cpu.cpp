// MoE's CPU kernels: the router per token, and the steps of the expert pipeline between its GEMMs
// (sort by expert, gather, activation, weighted combination, and their backward). The fronts
// (moe.cpp) have checked every shape before these run.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/moe/moe_common.h"
#include "ops/moe/moe_params.h"

namespace mamba::ops::cpu {

namespace {

using moe_detail::after;

// The best entry of v[0, n) after (pv, pi) in top-k order (pi < 0: the best of all); -1 if none.
int64_t next_best(const float* v, int64_t n, float pv, int64_t pi) {
  int64_t bi = -1;
  float bv = 0.0f;
  for (int64_t e = 0; e < n; ++e) {
    const float x = v[e];
    if (std::isnan(x) || (pi >= 0 && !after(x, e, pv, pi))) continue;
    if (bi < 0 || x > bv) {
      bi = e;
      bv = x;
    }
  }
  return bi;
}

// One token: l [E] -> idx [k], w [k]. scratch: E floats.
void route_token(const float* l, int64_t n, const MoeRouterParams& p, const float* bias, float* scratch,
                 int32_t* idx, float* w) {
  const int64_t k = p.top_k;
  const float* vals = l;
  if (p.kind == MoeRouter::softmax_topk) {
    float m = -INFINITY;
    for (int64_t e = 0; e < n; ++e) m = std::max(m, l[e]);
    float s = 0.0f;
    for (int64_t e = 0; e < n; ++e) {
      scratch[e] = std::exp(l[e] - m);
      s += scratch[e];
    }
    for (int64_t e = 0; e < n; ++e) scratch[e] /= s;
    vals = scratch;
  } else if (p.kind == MoeRouter::sigmoid_grouped) {
    for (int64_t e = 0; e < n; ++e) scratch[e] = sigmoid(l[e]) + (bias ? bias[e] : 0.0f);
    const int64_t gs = n / p.n_group;
    if (p.topk_group < p.n_group) {
      float score[32];
      for (int64_t g = 0; g < p.n_group; ++g) score[g] = moe_detail::group_score(scratch + g * gs, gs);
      for (int64_t g = 0; g < p.n_group; ++g) {
        int64_t rank = 0;
        for (int64_t h = 0; h < p.n_group; ++h) rank += after(score[g], g, score[h], h) ? 1 : 0;
        if (rank >= p.topk_group) std::fill(scratch + g * gs, scratch + (g + 1) * gs, 0.0f);
      }
    }
    vals = scratch;
  }
  float pv = 0.0f;
  int64_t pi = -1;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t i = next_best(vals, n, pv, pi);
    idx[j] = static_cast<int32_t>(i);
    if (i < 0) {
      w[j] = 0.0f;
      continue;
    }
    pv = vals[i];
    pi = i;
    w[j] = p.kind == MoeRouter::sigmoid_grouped ? sigmoid(l[i]) : vals[i];
  }
  moe_detail::finish_weights(p.kind, p.norm_topk, p.routed_scaling, k, w);
}

inline float gelu(float v) {
  return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
}
inline float gelu_grad(float v) {
  const float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
  return cdf + v * 0.39894228040143268f * std::exp(-0.5f * v * v);
}

}  // namespace

MoeRouting moe_route(const MoeRouteDims& dims, const Tensor& logits, const MoeRouterParams& p) {
  const int64_t tokens = dims.tokens, n = dims.n_experts, k = dims.top_k;
  MoeRouting r{Tensor::empty({tokens, k}, DType::i32), Tensor::empty({tokens, k})};
  const float* lp = logits.f32();
  // Held for the whole routing: a non-contiguous bias is copied, and the pointer must outlive it.
  const Tensor bias_t = p.kind == MoeRouter::sigmoid_grouped && p.correction_bias.defined()
                            ? p.correction_bias.contiguous()
                            : Tensor();
  const float* bias = bias_t.defined() ? bias_t.f32() : nullptr;
  int32_t* ip = r.experts.data<int32_t>();
  float* wp = r.weights.f32();
  parallel_for(tokens, [&](int64_t t) {
    std::vector<float> scratch(static_cast<size_t>(n));
    route_token(lp + t * n, n, p, bias, scratch.data(), ip + t * k, wp + t * k);
  });
  return r;
}

Tensor moe_route_bwd(const MoeRouteDims& dims, const Tensor& dweights, const Tensor& logits,
                     const Tensor& experts, const MoeRouterParams& p) {
  const int64_t tokens = dims.tokens, n = dims.n_experts, k = dims.top_k;
  Tensor dl = Tensor::zeros({tokens, n});
  const float *lp = logits.f32(), *dwp = dweights.f32();
  const int32_t* ip = experts.data<int32_t>();
  float* dlp = dl.f32();
  parallel_for(tokens, [&](int64_t t) {
    const float* l = lp + t * n;
    const int32_t* idx = ip + t * k;
    float* g = dlp + t * n;
    std::vector<float> q(static_cast<size_t>(k)), dq(static_cast<size_t>(k));
    float m = -INFINITY, s = 0.0f;
    switch (p.kind) {
      case MoeRouter::softmax_topk:
        for (int64_t e = 0; e < n; ++e) m = std::max(m, l[e]);
        for (int64_t e = 0; e < n; ++e) s += std::exp(l[e] - m);
        for (int64_t j = 0; j < k; ++j) q[j] = std::exp(l[idx[j]] - m) / s;
        break;
      case MoeRouter::topk_softmax:
        for (int64_t j = 0; j < k; ++j) m = std::max(m, l[idx[j]]);
        for (int64_t j = 0; j < k; ++j) {
          q[j] = std::exp(l[idx[j]] - m);
          s += q[j];
        }
        for (int64_t j = 0; j < k; ++j) q[j] /= s;
        break;
      case MoeRouter::sigmoid_grouped:
        for (int64_t j = 0; j < k; ++j) q[j] = sigmoid(l[idx[j]]);
        break;
    }
    const float c =
        moe_detail::weights_bwd(p.kind, p.norm_topk, p.routed_scaling, k, q.data(), dwp + t * k, dq.data());
    if (p.kind == MoeRouter::softmax_topk)
      for (int64_t e = 0; e < n; ++e) g[e] = -std::exp(l[e] - m) / s * c;
    for (int64_t j = 0; j < k; ++j) {
      if (p.kind == MoeRouter::sigmoid_grouped)
        g[idx[j]] = dq[j] * q[j] * (1.0f - q[j]);
      else
        g[idx[j]] = q[j] * (dq[j] - c);
    }
  });
  return dl;
}

std::vector<int64_t> moe_sort(const Tensor& experts, int64_t n_experts, Tensor& rows_of, Tensor& pos_of) {
  const int64_t n = experts.numel();
  const int32_t* ids = experts.data<int32_t>();
  std::vector<int64_t> counts(static_cast<size_t>(n_experts), 0);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= n_experts)
      throw_error(ErrorCode::out_of_range, "moe_experts: expert id ", ids[i], " at slot ", i, " outside [0, ",
                  n_experts, ")");
    ++counts[ids[i]];
  }
  std::vector<int64_t> next(static_cast<size_t>(n_experts), 0);
  for (int64_t e = 1; e < n_experts; ++e) next[e] = next[e - 1] + counts[e - 1];
  rows_of = Tensor::empty({n}, DType::i32);
  pos_of = Tensor::empty({n}, DType::i32);
  int32_t *ro = rows_of.data<int32_t>(), *po = pos_of.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = next[ids[i]]++;
    ro[p] = static_cast<int32_t>(i);
    po[i] = static_cast<int32_t>(p);
  }
  return counts;
}

void moe_gather(const Tensor& src, const Tensor& rows_of, const Tensor& weights, int64_t k, Tensor& out) {
  const int64_t d = src.size(-1);
  const float* sp = src.f32();
  const float* wp = weights.defined() ? weights.f32() : nullptr;
  const int32_t* ro = rows_of.data<int32_t>();
  float* op = out.f32();
  parallel_for(rows_of.numel(), [&](int64_t p) {
    const int64_t slot = ro[p];
    const float* s = sp + (slot / k) * d;
    float* o = op + p * d;
    if (wp) {
      const float scale = wp[slot];
      for (int64_t i = 0; i < d; ++i) o[i] = scale * s[i];
    } else {
      std::copy(s, s + d, o);
    }
  });
}

void moe_combine(const Tensor& rows, const Tensor& pos_of, const Tensor& weights, int64_t k, Tensor& y) {
  const int64_t d = y.size(-1), tokens = y.size(0);
  const float* rp = rows.f32();
  const float* wp = weights.defined() ? weights.f32() : nullptr;
  const int32_t* po = pos_of.data<int32_t>();
  float* yp = y.f32();
  parallel_for(tokens, [&](int64_t t) {
    float* yr = yp + t * d;
    std::fill(yr, yr + d, 0.0f);
    for (int64_t j = 0; j < k; ++j) {
      const float* r = rp + static_cast<int64_t>(po[t * k + j]) * d;
      const float scale = wp ? wp[t * k + j] : 1.0f;
      for (int64_t i = 0; i < d; ++i) yr[i] += scale * r[i];
    }
  });
}

void moe_dweights(const Tensor& dy, const Tensor& o, const Tensor& pos_of, int64_t k, Tensor& dweights) {
  const int64_t d = dy.size(-1);
  const float *dyp = dy.f32(), *op = o.f32();
  const int32_t* po = pos_of.data<int32_t>();
  float* dw = dweights.f32();
  parallel_for(pos_of.numel(), [&](int64_t slot) {
    const float* a = dyp + (slot / k) * d;
    const float* b = op + static_cast<int64_t>(po[slot]) * d;
    double acc = 0;
    for (int64_t i = 0; i < d; ++i) acc += double(a[i]) * b[i];
    dw[slot] = static_cast<float>(acc);
  });
}

void moe_act(const Tensor& h, MoeActivation act, Tensor& a) {
  const int64_t inter = a.size(-1), rows = a.size(0);
  const int64_t hw = h.size(-1);
  const float* hp = h.f32();
  float* ap = a.f32();
  parallel_for(rows, [&](int64_t r) {
    const float* hr = hp + r * hw;
    float* ar = ap + r * inter;
    for (int64_t i = 0; i < inter; ++i) {
      switch (act) {
        case MoeActivation::swiglu:
          ar[i] = silu(hr[i]) * hr[inter + i];
          break;
        case MoeActivation::gelu_gated:
          ar[i] = gelu(hr[i]) * hr[inter + i];
          break;
        case MoeActivation::relu2: {
          const float v = std::max(hr[i], 0.0f);
          ar[i] = v * v;
          break;
        }
      }
    }
  });
}

void moe_act_bwd(const Tensor& da, const Tensor& h, MoeActivation act, Tensor& dh) {
  const int64_t inter = da.size(-1), rows = da.size(0);
  const int64_t hw = h.size(-1);
  const float *hp = h.f32(), *dap = da.f32();
  float* dhp = dh.f32();
  parallel_for(rows, [&](int64_t r) {
    const float* hr = hp + r * hw;
    const float* dar = dap + r * inter;
    float* dhr = dhp + r * hw;
    for (int64_t i = 0; i < inter; ++i) {
      switch (act) {
        case MoeActivation::swiglu:
          dhr[i] = dar[i] * hr[inter + i] * silu_grad(hr[i]);
          dhr[inter + i] = dar[i] * silu(hr[i]);
          break;
        case MoeActivation::gelu_gated:
          dhr[i] = dar[i] * hr[inter + i] * gelu_grad(hr[i]);
          dhr[inter + i] = dar[i] * gelu(hr[i]);
          break;
        case MoeActivation::relu2:
          dhr[i] = dar[i] * 2.0f * std::max(hr[i], 0.0f);
          break;
      }
    }
  });
}

}  // namespace mamba::ops::cpu
