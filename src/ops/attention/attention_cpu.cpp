// CPU attention: one work item per (batch, head, query), softmax in f32 with max subtraction.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/attention/attention_params.h"
#include "ops/elementwise/activations.h"

namespace mamba::ops::cpu {

Tensor attention_fwd(const AttentionParams& p, const Tensor& q, const Tensor& k_cache,
                     const Tensor& v_cache) {
  const int64_t batch = p.batch, seq_len = p.seq_len, n_heads = p.n_heads, head_dim = p.head_dim;
  const int64_t cap = p.cap, n_kv = p.n_kv, pos = p.pos;
  const float scale = p.scale;
  Tensor out = Tensor::empty(q.shape());
  const float *qp = q.f32(), *kp = k_cache.f32(), *vp = v_cache.f32();
  float* op = out.f32();
  const int64_t group = n_heads / n_kv;
  // The dot products and the exponentials as SIMD reductions (omp simd: float sums reassociated
  // into vector lanes; exp_nonpositive instead of a scalar std::exp per key): scalar, they were a
  // third of a 2048-token prefill of the 130M hybrid (granite4h), and its Q4_K prefill fell behind
  // llama.cpp's.
  parallel_for(batch * seq_len * n_heads, [&](int64_t idx) {
    const int64_t h = idx % n_heads, t = (idx / n_heads) % seq_len, b = idx / (n_heads * seq_len);
    const int64_t kvh = h / group, n_keys = pos + t + 1;
    const float* qv = qp + idx * head_dim;
    thread_local std::vector<float> score;
    if (score.size() < static_cast<size_t>(n_keys)) score.resize(static_cast<size_t>(n_keys));
    float mx = -INFINITY;
    for (int64_t s = 0; s < n_keys; ++s) {
      const float* kv = kp + ((b * cap + s) * n_kv + kvh) * head_dim;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t e = 0; e < head_dim; ++e) dot += qv[e] * kv[e];
      score[s] = dot * scale;
      mx = std::max(mx, score[s]);
    }
    float sum = 0.0f;
    float* sc = score.data();
#pragma omp simd reduction(+ : sum)
    for (int64_t s = 0; s < n_keys; ++s) {
      sc[s] = exp_nonpositive(sc[s] - mx);
      sum += sc[s];
    }
    float* ov = op + idx * head_dim;
    for (int64_t e = 0; e < head_dim; ++e) ov[e] = 0.0f;
    for (int64_t s = 0; s < n_keys; ++s) {
      const float w = sc[s];
      const float* vv = vp + ((b * cap + s) * n_kv + kvh) * head_dim;
#pragma omp simd
      for (int64_t e = 0; e < head_dim; ++e) ov[e] += w * vv[e];
    }
    const float inv = 1.0f / sum;
    for (int64_t e = 0; e < head_dim; ++e) ov[e] *= inv;
  });
  return out;
}

void rotary_rotate(const RotaryParams& p, Tensor& x) {
  const int64_t batch = p.batch, seq_len = p.seq_len, heads = p.heads, head_dim = p.head_dim;
  const int64_t rotary_dim = p.rotary_dim, pos0 = p.pos0;
  const float base = p.base, sign = p.sign;
  const bool interleaved = p.interleaved;
  const int64_t half = rotary_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j)
    inv_freq[j] = 1.0f / std::pow(base, static_cast<float>(2 * j) / static_cast<float>(rotary_dim));
  float* xp = x.f32();
  parallel_for(batch * seq_len, [&](int64_t bt) {
    const float position = static_cast<float>(pos0 + bt % seq_len);
    for (int64_t j = 0; j < half; ++j) {
      const float angle = position * inv_freq[j];
      const float c = std::cos(angle), s = sign * std::sin(angle);
      for (int64_t h = 0; h < heads; ++h) {
        float* v = xp + (bt * heads + h) * head_dim;
        const int64_t i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + half;
        const float a = v[i0], bb = v[i1];
        v[i0] = a * c - bb * s;
        v[i1] = a * s + bb * c;
      }
    }
  });
}

}  // namespace mamba::ops::cpu
