// CPU attention: one work item per (batch, head, query), softmax in f32 with max subtraction.
#include "ops/attention/attention.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor attention_fwd(Exec& exec, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t pos,
                     float scale) {
  OpScope op_scope(exec, "attention_fwd", q.device());
  if (q.device() == Device::cuda) return cuda_kernels().attention.fwd(q, k_cache, v_cache, pos, scale);
  MAMBA_CHECK(q.is_contiguous() && k_cache.is_contiguous() && v_cache.is_contiguous());
  const int64_t batch = q.size(0), seq_len = q.size(1), n_heads = q.size(2), head_dim = q.size(3);
  const int64_t cap = k_cache.size(1), n_kv = k_cache.size(2);
  MAMBA_CHECK(pos + seq_len <= cap && n_heads % n_kv == 0 && k_cache.size(3) == head_dim);
  Tensor out = Tensor::empty(q.shape());
  const float *qp = q.f32(), *kp = k_cache.f32(), *vp = v_cache.f32();
  float* op = out.f32();
  const int64_t group = n_heads / n_kv;
  parallel_for(batch * seq_len * n_heads, [&](int64_t idx) {
    const int64_t h = idx % n_heads, t = (idx / n_heads) % seq_len, b = idx / (n_heads * seq_len);
    const int64_t kvh = h / group, n_keys = pos + t + 1;
    const float* qv = qp + idx * head_dim;
    std::vector<float> score(static_cast<size_t>(n_keys));
    float mx = -INFINITY;
    for (int64_t s = 0; s < n_keys; ++s) {
      const float* kv = kp + ((b * cap + s) * n_kv + kvh) * head_dim;
      float dot = 0.0f;
      for (int64_t e = 0; e < head_dim; ++e) dot += qv[e] * kv[e];
      score[s] = dot * scale;
      mx = std::max(mx, score[s]);
    }
    float sum = 0.0f;
    for (int64_t s = 0; s < n_keys; ++s) sum += score[s] = std::exp(score[s] - mx);
    float* ov = op + idx * head_dim;
    for (int64_t e = 0; e < head_dim; ++e) ov[e] = 0.0f;
    for (int64_t s = 0; s < n_keys; ++s) {
      const float w = score[s] / sum;
      const float* vv = vp + ((b * cap + s) * n_kv + kvh) * head_dim;
      for (int64_t e = 0; e < head_dim; ++e) ov[e] += w * vv[e];
    }
  });
  return out;
}

void rotary_rotate(Exec& exec, Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved,
                   float sign) {
  OpScope op_scope(exec, "rotary_rotate", x.device());
  if (x.device() == Device::cuda)
    return cuda_kernels().attention.rotary_rotate(x, rotary_dim, pos0, base, interleaved, sign);
  MAMBA_CHECK(x.is_contiguous() && x.dim() == 4 && rotary_dim % 2 == 0 && rotary_dim <= x.size(3));
  if (rotary_dim == 0) return;
  const int64_t batch = x.size(0), seq_len = x.size(1), heads = x.size(2), head_dim = x.size(3);
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

void rotary_apply(Exec& exec, Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved) {
  rotary_rotate(exec, x, rotary_dim, pos0, base, interleaved, 1.0f);
}

}  // namespace mamba::ops
