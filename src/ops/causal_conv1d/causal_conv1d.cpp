// CPU causal depthwise conv1d: channels in parallel, taps over a sliding window that starts in
// the carried state.
#include "ops/causal_conv1d/causal_conv1d.h"

#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/device.h"
#include "ops/elementwise/activations.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor causal_conv1d_fwd(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                         bool act) {
  OpScope op_scope(exec, "causal_conv1d_fwd", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().causal_conv1d.fwd(x, weight, bias, state, act);
  MAMBA_CHECK(x.dim() == 3 && x.stride(2) == 1, "x " << shape_str(x.shape()));
  const int64_t batch = x.size(0), seq_len = x.size(1), channels = x.size(2), width = weight.size(1);
  MAMBA_CHECK(weight.size(0) == channels && state.is_contiguous() &&
              state.shape() == (Shape{batch, channels, width - 1}));
  Tensor y = Tensor::empty({batch, seq_len, channels});
  const float *xp = x.f32(), *wp = weight.f32(), *bp = bias.defined() ? bias.f32() : nullptr;
  float *yp = y.f32(), *sp = state.f32();
  const int64_t xb = x.stride(0), xt = x.stride(1), hist = width - 1;
  // Work item: one (batch, channel) pair scanning its time axis.
  parallel_for(batch * channels, [&](int64_t bc) {
    const int64_t b = bc / channels, c = bc % channels;
    const float* w = wp + c * width;
    float* st = sp + bc * hist;
    std::vector<float> window(static_cast<size_t>(hist + seq_len));
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

Tensor causal_conv1d_step(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Tensor& state, bool act) {
  OpScope op_scope(exec, "causal_conv1d_step", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().causal_conv1d.step(x, weight, bias, state, act);
  MAMBA_CHECK(x.dim() == 2 && x.stride(1) == 1);
  const int64_t batch = x.size(0), channels = x.size(1), width = weight.size(1), hist = width - 1;
  MAMBA_CHECK(state.shape() == (Shape{batch, channels, hist}));
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

}  // namespace mamba::ops
