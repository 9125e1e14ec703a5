// Per-token router arithmetic shared by the CPU (moe_cpu.cpp) and the CUDA kernels (moe_cuda.cu), so
// both devices run the same sequence of f32 operations on the k selected values.
#pragma once
#include <cmath>
#include <cstdint>

#include "ops/moe/moe.h"

#ifdef __CUDACC__
#define MAMBA_MOE_HD __host__ __device__
#else
#define MAMBA_MOE_HD
#endif

namespace mamba::ops::moe_detail {

// The 1e-20 DeepSeek-V3 adds to the sum it normalizes by (sigmoid_grouped only).
MAMBA_MOE_HD inline float norm_eps(MoeRouter kind) {
  return kind == MoeRouter::sigmoid_grouped ? 1e-20f : 0.0f;
}

// Whether (v, i) comes after (pv, pi) in top-k order (value descending, index ascending).
MAMBA_MOE_HD inline bool after(float v, int64_t i, float pv, int64_t pi) {
  return v < pv || (v == pv && i > pi);
}

// Turns the k selected values q (in selection order) into the routing weights in place:
// topk_softmax takes the softmax of the selected logits; then the optional renormalization and the
// scaling.
MAMBA_MOE_HD inline void finish_weights(MoeRouter kind, bool norm, float scale, int64_t k, float* w) {
  if (kind == MoeRouter::topk_softmax) {
    float m = w[0];
    for (int64_t j = 1; j < k; ++j) m = w[j] > m ? w[j] : m;
    float s = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      w[j] = expf(w[j] - m);
      s += w[j];
    }
    for (int64_t j = 0; j < k; ++j) w[j] /= s;
  }
  if (norm) {
    float s = 0.0f;
    for (int64_t j = 0; j < k; ++j) s += w[j];
    const float den = s + norm_eps(kind);
    for (int64_t j = 0; j < k; ++j) w[j] /= den;
  }
  for (int64_t j = 0; j < k; ++j) w[j] *= scale;
}

// Backward of the normalization and scaling: given the selected values q (after topk_softmax's
// softmax, before the normalization) and d weights dw, writes d q into dq; returns Σ_j dq_j·q_j
// (what the softmax routers' backward subtracts).
MAMBA_MOE_HD inline float weights_bwd(MoeRouter kind, bool norm, float scale, int64_t k, const float* q,
                                      const float* dw, float* dq) {
  if (norm) {
    float s = 0.0f, d = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      s += q[j];
      d += dw[j] * q[j];
    }
    const float den = s + norm_eps(kind);
    const float mean = d / den;
    for (int64_t j = 0; j < k; ++j) dq[j] = scale * (dw[j] - mean) / den;
  } else {
    for (int64_t j = 0; j < k; ++j) dq[j] = scale * dw[j];
  }
  float c = 0.0f;
  for (int64_t j = 0; j < k; ++j) c += dq[j] * q[j];
  return c;
}

// The score of a group of sigmoid_grouped: the sum of its top-2 values (its value for a group of
// one). v: the group's `choice` values.
MAMBA_MOE_HD inline float group_score(const float* v, int64_t n) {
  float b1 = -INFINITY, b2 = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] > b1) {
      b2 = b1;
      b1 = v[i];
    } else if (v[i] > b2) {
      b2 = v[i];
    }
  }
  return n >= 2 ? b1 + b2 : b1;
}

}  // namespace mamba::ops::moe_detail
