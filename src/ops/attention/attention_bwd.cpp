// Backward of causal GQA attention and of rotary embeddings on CPU. Work item = (batch, kv head):
// it owns the gradients of its keys and values, so the query heads sharing them need no
// reduction. Softmax backward: ds_j = p_j·(dp_j − Σ_i p_i·dp_i), dp_j = dout·v_j.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/attention/attention.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

void attention_bwd(Exec& exec, const Tensor& dout_in, const Tensor& q, const Tensor& k, const Tensor& v,
                   float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  OpScope op_scope(exec, "attention_bwd", q.device());
  if (q.device() == Device::cuda) return cuda_kernels().attention.bwd(dout_in, q, k, v, scale, dq, dk, dv);
  MAMBA_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous() && k.shape() == v.shape());
  const Tensor dout = dout_in.contiguous();
  const int64_t batch = q.size(0), seq_len = q.size(1), n_heads = q.size(2), head_dim = q.size(3);
  const int64_t n_kv = k.size(2), group = n_heads / n_kv;
  MAMBA_CHECK(dout.shape() == q.shape() && k.size(1) == seq_len && k.size(3) == head_dim &&
              n_heads % n_kv == 0);
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

// The transpose of the rotation [c −s; s c] is the rotation by the opposite angle.
void rotary_bwd(Exec& exec, Tensor& dx, int64_t rotary_dim, int64_t pos0, float base, bool interleaved) {
  rotary_rotate(exec, dx, rotary_dim, pos0, base, interleaved, -1.0f);
}

}  // namespace mamba::ops
