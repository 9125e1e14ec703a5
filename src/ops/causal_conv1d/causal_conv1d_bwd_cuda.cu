// Backward of the causal depthwise conv1d on CUDA, from a zero initial state (same formulas as
// causal_conv1d_bwd.cpp): dpre = dy·silu'(pre) per (batch, token, channel) into a buffer; dx as
// a transposed conv of dpre, one thread per element; the weight and bias gradients as
// deterministic two-stage per-channel sums over all (batch, token) rows: per-chunk partials
// (32 channels × 8 row lanes a block, in double) then the chunks in order (backend/cuda/reduce.h).
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "backend/cuda/reduce.h"
#include "core/error.h"
#include "ops/causal_conv1d/causal_conv1d.h"

namespace mamba::ops {

namespace {

constexpr int kCols = 32, kRowLanes = 8;
constexpr int kMaxWidth = 16;  // taps per channel held in registers by the weight-gradient kernel

struct ConvBwdParams {
  const float* x;       // [batch, seq_len, channels], rows strided
  const float* weight;  // [channels, width]
  const float* bias;    // [channels] or null
  const float* dy;      // [batch, seq_len, channels] contiguous
  float* dpre;          // [batch, seq_len, channels] contiguous
  float* dx;            // [batch, seq_len, channels] contiguous
  int64_t batch, seq_len, channels, width;
  int64_t x_batch_stride, x_seq_stride;
  bool silu;
};

__device__ __forceinline__ float x_at(const ConvBwdParams& p, int64_t b, int64_t tau, int64_t c) {
  return tau >= 0 ? p.x[b * p.x_batch_stride + tau * p.x_seq_stride + c] : 0.0f;
}

__global__ void conv_dpre_kernel(ConvBwdParams p) {
  const int64_t hist = p.width - 1;
  MAMBA_GRID_STRIDE_LOOP(idx, p.batch * p.seq_len * p.channels) {
    const float g = p.dy[idx];
    if (!p.silu) {
      p.dpre[idx] = g;
      continue;
    }
    const int64_t c = idx % p.channels, t = (idx / p.channels) % p.seq_len,
                  b = idx / (p.channels * p.seq_len);
    const float* w = p.weight + c * p.width;
    float pre = p.bias ? p.bias[c] : 0.0f;
    for (int64_t k = 0; k < p.width; ++k) pre += w[k] * x_at(p, b, t - hist + k, c);
    const float s = mamba::cuda::sigmoid_f(pre);
    p.dpre[idx] = g * (s * (1.0f + pre * (1.0f - s)));
  }
}

// dx[b,τ,c] = Σ_k w[c,k]·dpre[b, τ + K−1 − k, c] over outputs inside the sequence.
__global__ void conv_dx_kernel(ConvBwdParams p) {
  const int64_t hist = p.width - 1;
  MAMBA_GRID_STRIDE_LOOP(idx, p.batch * p.seq_len * p.channels) {
    const int64_t c = idx % p.channels, tau = (idx / p.channels) % p.seq_len,
                  b = idx / (p.channels * p.seq_len);
    const float* w = p.weight + c * p.width;
    float acc = 0.0f;
    for (int64_t k = 0; k < p.width; ++k) {
      const int64_t t = tau + hist - k;
      if (t < p.seq_len) acc += w[k] * p.dpre[(b * p.seq_len + t) * p.channels + c];
    }
    p.dx[idx] = acc;
  }
}

// Stage 1 of dweight[c,k] += Σ_{b,t} dpre[b,t,c]·x[b, t−(K−1)+k, c] and dbias[c] += Σ_{b,t} dpre[b,t,c]:
// a block per (kCols channels, chunk of rows); row lanes accumulate in double and reduce in order
// into pw [chunk, channels·width] and pb [chunk, channels] (pb null without a bias gradient).
__global__ void conv_dweight_partial_kernel(ConvBwdParams p, int64_t rows_per_chunk, float* pw, float* pb) {
  __shared__ double part[kRowLanes][kCols + 1];
  const int64_t hist = p.width - 1, rows = p.batch * p.seq_len;
  const int64_t c = blockIdx.x * int64_t(kCols) + threadIdx.x;
  const int64_t begin = blockIdx.y * rows_per_chunk;
  const int64_t end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
  double dw[kMaxWidth + 1] = {};  // taps, then the bias
  if (c < p.channels) {
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowLanes) {
      const int64_t b = r / p.seq_len, t = r % p.seq_len;
      const float g = p.dpre[r * p.channels + c];
#pragma unroll
      for (int k = 0; k < kMaxWidth; ++k)
        if (k < p.width) dw[k] += static_cast<double>(g) * x_at(p, b, t - hist + k, c);
      dw[kMaxWidth] += g;
    }
  }
  for (int k = 0; k <= kMaxWidth; ++k) {
    if (k < kMaxWidth && k >= p.width) continue;  // uniform across the block
    if (k == kMaxWidth && pb == nullptr) break;
    part[threadIdx.y][threadIdx.x] = dw[k];
    __syncthreads();
    if (threadIdx.y == 0 && c < p.channels) {
      double sum = 0.0;
      for (int i = 0; i < kRowLanes; ++i) sum += part[i][threadIdx.x];
      if (k == kMaxWidth)
        pb[blockIdx.y * p.channels + c] = static_cast<float>(sum);
      else
        pw[blockIdx.y * p.channels * p.width + c * p.width + k] = static_cast<float>(sum);
    }
    __syncthreads();  // part is rewritten for the next tap
  }
}

}  // namespace

Tensor causal_conv1d_bwd_cuda(const Tensor& dy_in, const Tensor& x_in, const Tensor& weight_in,
                              const Tensor& bias_in, bool silu, Tensor& dweight, Tensor& dbias) {
  mamba::cuda::check_cuda_tensor(dy_in, "causal_conv1d_bwd: dy");
  mamba::cuda::check_cuda_tensor(x_in, "causal_conv1d_bwd: x");
  mamba::cuda::check_cuda_tensor(weight_in, "causal_conv1d_bwd: weight");
  mamba::cuda::check_cuda_tensor(dweight, "causal_conv1d_bwd: dweight");
  MAMBA_CHECK(x_in.dim() == 3 && x_in.dtype() == DType::f32, "x " << shape_str(x_in.shape()));
  // The kernels index rows through (batch, token) strides with a unit channel stride.
  const Tensor x = x_in.stride(2) == 1 ? x_in : x_in.contiguous();
  const Tensor dy = dy_in.contiguous(), weight = weight_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const int64_t batch = x.size(0), seq_len = x.size(1), channels = x.size(2), width = weight.size(1);
  MAMBA_CHECK(dy.shape() == (Shape{batch, seq_len, channels}) && weight.size(0) == channels &&
              dy.dtype() == DType::f32 && weight.dtype() == DType::f32);
  MAMBA_CHECK(width >= 1 && width <= kMaxWidth,
              "causal_conv1d_bwd (CUDA): width " << width << " > " << kMaxWidth);
  MAMBA_CHECK(dweight.numel() == channels * width && dweight.is_contiguous() &&
              dweight.dtype() == DType::f32);
  if (bias.defined()) mamba::cuda::check_cuda_tensor(bias, "causal_conv1d_bwd: bias");
  if (dbias.defined()) {
    mamba::cuda::check_cuda_tensor(dbias, "causal_conv1d_bwd: dbias");
    MAMBA_CHECK(dbias.numel() == channels && dbias.is_contiguous() && dbias.dtype() == DType::f32);
  }
  Tensor dx = Tensor::empty({batch, seq_len, channels}, DType::f32, Device::cuda);
  const int64_t n = batch * seq_len * channels;
  if (n == 0) return dx;
  Tensor dpre = Tensor::empty({batch, seq_len, channels}, DType::f32, Device::cuda);
  const ConvBwdParams p{x.f32(),  weight.f32(), bias.defined() ? bias.f32() : nullptr,
                        dy.f32(), dpre.f32(),   dx.f32(),
                        batch,    seq_len,      channels,
                        width,    x.stride(0),  x.stride(1),
                        silu};
  cudaStream_t s = mamba::cuda::stream();
  conv_dpre_kernel<<<mamba::cuda::grid_for(n), 256, 0, s>>>(p);
  CUDA_CHECK_LAUNCH();
  conv_dx_kernel<<<mamba::cuda::grid_for(n), 256, 0, s>>>(p);
  CUDA_CHECK_LAUNCH();
  // Weight and bias gradients: chunks of rows over many blocks (a few channels over every token
  // in one block per 32 channels was a long serial loop), then the chunks summed in order.
  const int64_t rows = batch * seq_len, col_tiles = (channels + kCols - 1) / kCols;
  const mamba::cuda::RowChunks rc = mamba::cuda::row_chunks(rows, col_tiles, 16 * kRowLanes);
  const Tensor pw = Tensor::empty({rc.chunks, channels * width}, DType::f32, Device::cuda);
  const Tensor pb =
      dbias.defined() ? Tensor::empty({rc.chunks, channels}, DType::f32, Device::cuda) : Tensor();
  conv_dweight_partial_kernel<<<dim3(static_cast<unsigned int>(col_tiles),
                                     static_cast<unsigned int>(rc.chunks)),
                                dim3(kCols, kRowLanes), 0, s>>>(p, rc.rows_per_chunk, pw.f32(),
                                                                dbias.defined() ? pb.f32() : nullptr);
  CUDA_CHECK_LAUNCH();
  mamba::cuda::column_sum_add(pw.f32(), rc.chunks, channels * width, channels * width, dweight.f32(), s);
  if (dbias.defined()) mamba::cuda::column_sum_add(pb.f32(), rc.chunks, channels, channels, dbias.f32(), s);
  return dx;
}

}  // namespace mamba::ops
