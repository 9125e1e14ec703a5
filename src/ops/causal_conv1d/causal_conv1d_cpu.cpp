// CPU causal depthwise conv1d: channels in parallel, taps over a sliding window that starts in
// the carried state.
#include <vector>

#include "core/parallel.h"
#include "ops/causal_conv1d/causal_conv1d_params.h"
#include "ops/elementwise/activations.h"

namespace mamba::ops::cpu {

Tensor causal_conv1d_fwd(const CausalConv1dParams& p, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, Tensor& state) {
  const int64_t batch = p.batch, seq_len = p.seq_len, channels = p.channels, width = p.width;
  const bool act = p.act;
  Tensor y = Tensor::empty({batch, seq_len, channels});
  const float *xp = x.f32(), *wp = weight.f32(), *bp = bias.defined() ? bias.f32() : nullptr;
  float *yp = y.f32(), *sp = state.f32();
  const int64_t xb = x.stride(0), xt = x.stride(1), hist = width - 1;
  // Work item: one (batch, channel) pair scanning its time axis.
  parallel_for(batch * channels, [&](int64_t bc) {
    const int64_t b = bc / channels, c = bc % channels;
    const float* w = wp + c * width;
    float* st = sp + bc * hist;
    // One buffer per thread, grown as needed: a vector per channel was a malloc / free per channel
    // and token in decode (seq_len 1), a few percent of a quantized decode.
    thread_local std::vector<float> window;
    window.resize(static_cast<size_t>(hist + seq_len));
    for (int64_t k = 0; k < hist; ++k) window[k] = st[k];
    for (int64_t t = 0; t < seq_len; ++t) window[hist + t] = xp[b * xb + t * xt + c];
    for (int64_t t = 0; t < seq_len; ++t) {
      float acc = bp ? bp[c] : 0.0f;
      for (int64_t k = 0; k < width; ++k) acc += w[k] * window[t + k];
      yp[(b * seq_len + t) * channels + c] = act ? silu(acc) : acc;
    }
    for (int64_t k = 0; k < hist; ++k) st[k] = window[seq_len + k];
  });
  return y;
}

Tensor causal_conv1d_step(const CausalConv1dParams& p, const Tensor& x, const Tensor& weight,
                          const Tensor& bias, Tensor& state) {
  const int64_t batch = p.batch, channels = p.channels, width = p.width, hist = width - 1;
  const bool act = p.act;
  Tensor y = Tensor::empty({batch, channels});
  const float *xp = x.f32(), *wp = weight.f32(), *bp = bias.defined() ? bias.f32() : nullptr;
  float *yp = y.f32(), *sp = state.f32();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c) {
      float* st = sp + (b * channels + c) * hist;
      const float* w = wp + c * width;
      const float xv = xp[b * x.stride(0) + c];
      float acc = (bp ? bp[c] : 0.0f) + w[hist] * xv;
      for (int64_t k = 0; k < hist; ++k) acc += w[k] * st[k];
      for (int64_t k = 0; k + 1 < hist; ++k) st[k] = st[k + 1];
      if (hist > 0) st[hist - 1] = xv;
      yp[b * channels + c] = act ? silu(acc) : acc;
    }
  return y;
}

}  // namespace mamba::ops::cpu
