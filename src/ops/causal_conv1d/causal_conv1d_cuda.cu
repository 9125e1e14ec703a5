// Causal depthwise conv1d on CUDA. Forward: one thread per output (batch, token, channel), taps
// before the sequence read from the carried state; then one thread per (batch, channel) shifts
// the state (a separate launch, so no output thread can see the new state). One token (decode):
// one thread per (batch, channel) does both.
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/causal_conv1d/causal_conv1d.h"

namespace mamba::ops {

namespace {

struct ConvParams {
  const float* x;       // [batch, seq_len, channels], rows strided
  const float* weight;  // [channels, width]
  const float* bias;    // [channels] or null
  float* state;         // [batch, channels, width - 1]
  float* y;             // [batch, seq_len, channels] contiguous
  int64_t batch, seq_len, channels, width;
  int64_t x_batch_stride, x_seq_stride;
  bool silu;
};

// out[b,t,c] = bias[c] + Σ_k w[c,k]·in[b, t−(K−1)+k, c], in[τ < 0] = state[b, c, K−1+τ] (SPEC §0).
__global__ void causal_conv1d_fwd_kernel(ConvParams p) {
  const int64_t hist = p.width - 1;
  MAMBA_GRID_STRIDE_LOOP(idx, p.batch * p.seq_len * p.channels) {
    const int64_t c = idx % p.channels, t = (idx / p.channels) % p.seq_len,
                  b = idx / (p.channels * p.seq_len);
    const float* w = p.weight + c * p.width;
    const float* st = p.state + (b * p.channels + c) * hist;
    float acc = p.bias ? p.bias[c] : 0.0f;
    for (int64_t k = 0; k < p.width; ++k) {
      const int64_t tau = t - hist + k;
      const float v = tau >= 0 ? p.x[b * p.x_batch_stride + tau * p.x_seq_stride + c] : st[hist + tau];
      acc += w[k] * v;
    }
    p.y[idx] = p.silu ? mamba::cuda::silu_f(acc) : acc;
  }
}

// state[b,c,k] ← input at τ = L − (K−1) + k (from x, or the old state when τ < 0). Reading
// state[k + L] before writing state[k] keeps the in-place shift correct.
__global__ void causal_conv1d_state_kernel(ConvParams p) {
  const int64_t hist = p.width - 1;
  MAMBA_GRID_STRIDE_LOOP(bc, p.batch * p.channels) {
    const int64_t b = bc / p.channels, c = bc % p.channels;
    float* st = p.state + bc * hist;
    for (int64_t k = 0; k < hist; ++k) {
      const int64_t tau = p.seq_len - hist + k;
      st[k] = tau >= 0 ? p.x[b * p.x_batch_stride + tau * p.x_seq_stride + c] : st[k + p.seq_len];
    }
  }
}

// One token (decode, and the step op): the same sum in the same order as causal_conv1d_fwd_kernel
// (the same bits) and the state kernel's shift, in one launch instead of two.
__global__ void causal_conv1d_fwd_one_kernel(ConvParams p) {
  const int64_t hist = p.width - 1;
  MAMBA_GRID_STRIDE_LOOP(bc, p.batch * p.channels) {
    const int64_t b = bc / p.channels, c = bc % p.channels;
    float* st = p.state + bc * hist;
    const float* w = p.weight + c * p.width;
    const float xv = p.x[b * p.x_batch_stride + c];
    float acc = p.bias ? p.bias[c] : 0.0f;
    for (int64_t k = 0; k < hist; ++k) acc += w[k] * st[k];
    acc += w[hist] * xv;
    for (int64_t k = 0; k + 1 < hist; ++k) st[k] = st[k + 1];
    if (hist > 0) st[hist - 1] = xv;
    p.y[bc] = p.silu ? mamba::cuda::silu_f(acc) : acc;
  }
}

ConvParams make_params(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state, bool silu) {
  mamba::cuda::check_cuda_tensor(weight, "causal_conv1d: weight");
  mamba::cuda::check_cuda_tensor(state, "causal_conv1d: state");
  MAMBA_CHECK(x.dtype() == DType::f32 && weight.is_contiguous() && state.is_contiguous());
  MAMBA_CHECK(!bias.defined() || (bias.device() == Device::cuda && bias.is_contiguous()));
  ConvParams p{};
  p.x = x.f32();
  p.weight = weight.f32();
  p.bias = bias.defined() ? bias.f32() : nullptr;
  p.state = state.f32();
  p.width = weight.size(1);
  p.silu = silu;
  return p;
}

}  // namespace

Tensor causal_conv1d_fwd_cuda(const Tensor& x_in, const Tensor& weight, const Tensor& bias, Tensor& state,
                              bool silu) {
  MAMBA_CHECK(x_in.dim() == 3, "x " << shape_str(x_in.shape()));
  const Tensor x = x_in.stride(2) == 1 ? x_in : x_in.contiguous();
  const int64_t batch = x.size(0), seq_len = x.size(1), channels = x.size(2), width = weight.size(1);
  MAMBA_CHECK(weight.size(0) == channels && state.shape() == (Shape{batch, channels, width - 1}),
              "causal_conv1d: weight " << shape_str(weight.shape()) << " state " << shape_str(state.shape()));
  Tensor y = Tensor::empty({batch, seq_len, channels}, DType::f32, Device::cuda);
  ConvParams p = make_params(x, weight, bias, state, silu);
  p.y = y.f32();
  p.batch = batch;
  p.seq_len = seq_len;
  p.channels = channels;
  p.x_batch_stride = x.stride(0);
  p.x_seq_stride = x.stride(1);
  if (y.numel() == 0) return y;
  if (seq_len == 1) {
    causal_conv1d_fwd_one_kernel<<<mamba::cuda::grid_for(batch * channels), 256, 0, mamba::cuda::stream()>>>(
        p);
    CUDA_CHECK_LAUNCH();
    return y;
  }
  causal_conv1d_fwd_kernel<<<mamba::cuda::grid_for(y.numel()), 256, 0, mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  if (width > 1) {
    causal_conv1d_state_kernel<<<mamba::cuda::grid_for(batch * channels), 256, 0, mamba::cuda::stream()>>>(p);
    CUDA_CHECK_LAUNCH();
  }
  return y;
}

Tensor causal_conv1d_step_cuda(const Tensor& x_in, const Tensor& weight, const Tensor& bias, Tensor& state,
                               bool silu) {
  MAMBA_CHECK(x_in.dim() == 2);
  const Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), width = weight.size(1);
  MAMBA_CHECK(weight.size(0) == channels && state.shape() == (Shape{batch, channels, width - 1}));
  Tensor y = Tensor::empty({batch, channels}, DType::f32, Device::cuda);
  ConvParams p = make_params(x, weight, bias, state, silu);
  p.y = y.f32();
  p.batch = batch;
  p.seq_len = 1;
  p.channels = channels;
  p.x_batch_stride = x.stride(0);
  if (y.numel() == 0) return y;
  causal_conv1d_fwd_one_kernel<<<mamba::cuda::grid_for(batch * channels), 256, 0, mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace mamba::ops
