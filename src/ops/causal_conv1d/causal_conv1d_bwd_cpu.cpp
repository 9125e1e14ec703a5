// Backward of the causal depthwise conv1d on CPU, from a zero initial state. Work item = one
// channel (all batches), so its weight and bias gradients need no reduction across threads:
//   dpre[t] = dy[t]·silu'(pre[t]);  dx[τ] = Σ_k w[k]·dpre[τ + K−1 − k];  dw[k] = Σ_t dpre[t]·x[t − (K−1) +
//   k].
#include <vector>

#include "core/parallel.h"
#include "ops/causal_conv1d/causal_conv1d_params.h"
#include "ops/elementwise/activations.h"

namespace mamba::ops::cpu {

Tensor causal_conv1d_bwd(const CausalConv1dParams& p, const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, Tensor& dweight, Tensor& dbias) {
  const int64_t batch = p.batch, seq_len = p.seq_len, channels = p.channels, width = p.width;
  const int64_t hist = width - 1;
  const bool act = p.act;
  Tensor dx = Tensor::empty({batch, seq_len, channels});
  const float *xp = x.f32(), *wp = weight.f32(), *bp = bias.defined() ? bias.f32() : nullptr, *dyp = dy.f32();
  float *dxp = dx.f32(), *dwp = dweight.f32(), *dbp = dbias.defined() ? dbias.f32() : nullptr;
  const int64_t xb = x.stride(0), xt = x.stride(1);
  parallel_for(channels, [&](int64_t c) {
    const float* w = wp + c * width;
    std::vector<float> window(static_cast<size_t>(hist + seq_len)), dpre(static_cast<size_t>(seq_len));
    std::vector<double> dw(static_cast<size_t>(width), 0.0);
    double db = 0;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t t = 0; t < seq_len; ++t) window[hist + t] = xp[b * xb + t * xt + c];
      for (int64_t k = 0; k < hist; ++k) window[k] = 0.0f;
      for (int64_t t = 0; t < seq_len; ++t) {
        const float g = dyp[(b * seq_len + t) * channels + c];
        if (act) {
          float pre = bp ? bp[c] : 0.0f;
          for (int64_t k = 0; k < width; ++k) pre += w[k] * window[t + k];
          dpre[t] = g * silu_grad(pre);
        } else {
          dpre[t] = g;
        }
        db += dpre[t];
        for (int64_t k = 0; k < width; ++k) dw[k] += static_cast<double>(dpre[t]) * window[t + k];
      }
      for (int64_t tau = 0; tau < seq_len; ++tau) {
        float acc = 0.0f;
        for (int64_t k = 0; k < width; ++k) {
          const int64_t t = tau + hist - k;  // output that read input tau through tap k
          if (t < seq_len) acc += w[k] * dpre[t];
        }
        dxp[(b * seq_len + tau) * channels + c] = acc;
      }
    }
    for (int64_t k = 0; k < width; ++k) dwp[c * width + k] += static_cast<float>(dw[k]);
    if (dbp) dbp[c] += static_cast<float>(db);
  });
  return dx;
}

}  // namespace mamba::ops::cpu
