// CPU causal depthwise conv1d: blocks of channels in parallel, taps over a sliding window that
// starts in the carried state.
#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "ops/causal_conv1d/causal_conv1d_params.h"
#include "ops/elementwise/activations.h"

namespace mamba::ops::cpu {

namespace {

// y[c] += w[c]·x[c] over a block of channels (vectorizes: the rows never overlap).
void add_tap(float* __restrict y, const float* __restrict w, const float* __restrict x, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += w[c] * x[c];
}

}  // namespace

// Work item: one batch row × a block of tokens, every channel. Tokens whose taps all lie in x
// run tap by tap across the channels (whole rows of x and of the transposed weight: contiguous,
// so they vectorize and stream); the first width − 1 tokens, which reach into the carried state,
// go channel by channel. Per output: the bias, then the taps in order (the sums of one channel at
// a time). The state is updated after every item has read it.
Tensor causal_conv1d_fwd(const CausalConv1dParams& p, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, Tensor& state) {
  const int64_t batch = p.batch, seq_len = p.seq_len, channels = p.channels, width = p.width;
  const bool act = p.act;
  Tensor y = Tensor::empty({batch, seq_len, channels});
  const float *xp = x.f32(), *wp = weight.f32(), *bp = bias.defined() ? bias.f32() : nullptr;
  float *yp = y.f32(), *sp = state.f32();
  const int64_t xb = x.stride(0), xt = x.stride(1), hist = width - 1;
  std::vector<float> wt(static_cast<size_t>(width * channels));  // [width, channels]
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t k = 0; k < width; ++k) wt[k * channels + c] = wp[c * width + k];
  constexpr int64_t kTokens = 16;
  const int64_t n_blocks = (seq_len + kTokens - 1) / kTokens;
  parallel_for(batch * n_blocks, [&](int64_t task) {
    const int64_t b = task / n_blocks, t0 = (task % n_blocks) * kTokens, t1 = std::min(seq_len, t0 + kTokens);
    const float* xbase = xp + b * xb;
    for (int64_t t = t0; t < t1; ++t) {
      float* yr = yp + (b * seq_len + t) * channels;
      if (t >= hist) {
        for (int64_t c = 0; c < channels; ++c) yr[c] = bp ? bp[c] : 0.0f;
        for (int64_t k = 0; k < width; ++k)
          add_tap(yr, wt.data() + k * channels, xbase + (t - hist + k) * xt, channels);
      } else {
        for (int64_t c = 0; c < channels; ++c) {
          const float* st = sp + (b * channels + c) * hist;
          float acc = bp ? bp[c] : 0.0f;
          for (int64_t k = 0; k < width; ++k) {
            const int64_t tau = t - hist + k;  // < 0: in the carried state
            acc += wt[k * channels + c] * (tau < 0 ? st[hist + tau] : xbase[tau * xt + c]);
          }
          yr[c] = acc;
        }
      }
      if (act)
        for (int64_t c = 0; c < channels; ++c) yr[c] = silu_fast(yr[c]);  // vectorizes
    }
  });
  // The new state: the last hist inputs of [old state, x] (reads at k + seq_len > k: in order).
  parallel_for(batch * channels, [&](int64_t bc) {
    const int64_t b = bc / channels, c = bc % channels;
    float* st = sp + bc * hist;
    for (int64_t k = 0; k < hist; ++k) {
      const int64_t tau = seq_len - hist + k;
      st[k] = tau < 0 ? st[hist + tau] : xp[b * xb + tau * xt + c];
    }
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
      yp[b * channels + c] = act ? silu_fast(acc) : acc;  // as the whole-sequence pass
    }
  return y;
}

}  // namespace mamba::ops::cpu
