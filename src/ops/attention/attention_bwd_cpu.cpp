// Backward of causal GQA attention and of rotary embeddings on CPU. Work item = (batch, kv head):
// it owns the gradients of its keys and values, so the query heads sharing them need no
// reduction. Softmax backward: ds_j = p_j·(dp_j − Σ_i p_i·dp_i), dp_j = dout·v_j.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/attention/attention_params.h"

namespace mamba::ops::cpu {

void attention_bwd(const AttentionBwdParams& p, const Tensor& dout, const Tensor& q, const Tensor& k,
                   const Tensor& v, Tensor& dq, Tensor& dk, Tensor& dv) {
  const int64_t batch = p.batch, seq_len = p.seq_len, n_heads = p.n_heads, head_dim = p.head_dim;
  const int64_t n_kv = p.n_kv, group = n_heads / n_kv;
  const float scale = p.scale;
  dq = Tensor::empty(q.shape());
  dk = Tensor::zeros(k.shape());
  dv = Tensor::zeros(v.shape());
  const float *qp = q.f32(), *kp = k.f32(), *vp = v.f32(), *dop = dout.f32();
  float *dqp = dq.f32(), *dkp = dk.f32(), *dvp = dv.f32();
  parallel_for(batch * n_kv, [&](int64_t bk) {
    const int64_t b = bk / n_kv, kvh = bk % n_kv;
    std::vector<float> prob(static_cast<size_t>(seq_len)), dprob(static_cast<size_t>(seq_len));
    auto kv_at = [&](int64_t s) { return ((b * seq_len + s) * n_kv + kvh) * head_dim; };  // offset in k, v
    for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h)
      for (int64_t t = 0; t < seq_len; ++t) {
        const int64_t qi = ((b * seq_len + t) * n_heads + h) * head_dim;
        const float *qv = qp + qi, *go = dop + qi;
        float mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          const float* kv = kp + kv_at(s);
          float dot = 0.0f;
          for (int64_t e = 0; e < head_dim; ++e) dot += qv[e] * kv[e];
          prob[s] = dot * scale;
          mx = std::max(mx, prob[s]);
        }
        float sum = 0.0f;
        for (int64_t s = 0; s <= t; ++s) sum += prob[s] = std::exp(prob[s] - mx);
        float pdp = 0.0f;  // Σ p·dp
        for (int64_t s = 0; s <= t; ++s) {
          prob[s] /= sum;
          const float* vv = vp + kv_at(s);
          float dot = 0.0f;
          for (int64_t e = 0; e < head_dim; ++e) dot += go[e] * vv[e];
          dprob[s] = dot;
          pdp += prob[s] * dot;
        }
        float* gq = dqp + qi;
        for (int64_t e = 0; e < head_dim; ++e) gq[e] = 0.0f;
        for (int64_t s = 0; s <= t; ++s) {
          const float ds = prob[s] * (dprob[s] - pdp) * scale;
          const float* kv = kp + kv_at(s);
          float *gk = dkp + kv_at(s), *gv = dvp + kv_at(s);
          for (int64_t e = 0; e < head_dim; ++e) {
            gq[e] += ds * kv[e];
            gk[e] += ds * qv[e];
            gv[e] += prob[s] * go[e];
          }
        }
      }
  });
}

}  // namespace mamba::ops::cpu
