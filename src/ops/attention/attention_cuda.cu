// Causal GQA attention on CUDA: one block per (batch, query, head) streams its keys in tiles of
// kTile with an online softmax (running max and sum, f32), so any context length fits in a fixed
// amount of shared memory; thread i owns output dims i, i + kThreads. Rotary: one thread per
// (token, head, pair). Simple and exact; a tensor-core flash kernel is future work.
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/attention/attention.h"

namespace mamba::ops {

namespace {

constexpr int kThreads = 128;
constexpr int kTile = 256;  // keys per tile
constexpr int kMaxHeadDim = 256;
constexpr int kDimsPerThread = kMaxHeadDim / kThreads;

struct AttentionParams {
  const float *q, *k,
      *v;      // q [batch, seq_len, n_heads, head_dim]; k, v [batch, capacity, n_kv_heads, head_dim]
  float* out;  // [batch, seq_len, n_heads, head_dim]
  int64_t batch, seq_len, n_heads, n_kv_heads, head_dim, capacity, pos;
  float scale;
};

__global__ void attention_fwd_kernel(AttentionParams p) {
  __shared__ float q_s[kMaxHeadDim];
  __shared__ float w_s[kTile];
  __shared__ float scratch[32];
  const int64_t H = p.n_heads, hd = p.head_dim;
  const int64_t h = blockIdx.x % H, t = (blockIdx.x / H) % p.seq_len, b = blockIdx.x / (H * p.seq_len);
  const int64_t kvh = h / (H / p.n_kv_heads), n_keys = p.pos + t + 1;
  const int tid = threadIdx.x;
  for (int64_t e = tid; e < hd; e += kThreads) q_s[e] = p.q[blockIdx.x * hd + e];
  const float* k_base = p.k + (b * p.capacity * p.n_kv_heads + kvh) * hd;
  const float* v_base = p.v + (b * p.capacity * p.n_kv_heads + kvh) * hd;
  const int64_t key_stride = p.n_kv_heads * hd;
  float acc[kDimsPerThread] = {};
  float running_max = -INFINITY, running_sum = 0.0f;
  __syncthreads();
  for (int64_t s0 = 0; s0 < n_keys; s0 += kTile) {
    const int64_t len = min(static_cast<int64_t>(kTile), n_keys - s0);
    float tile_max = -INFINITY;
    for (int64_t s = tid; s < len; s += kThreads) {
      const float* kv = k_base + (s0 + s) * key_stride;
      float dot = 0.0f;
      for (int64_t e = 0; e < hd; ++e) dot += q_s[e] * kv[e];
      w_s[s] = dot * p.scale;
      tile_max = fmaxf(tile_max, w_s[s]);
    }
    const float new_max = fmaxf(running_max, mamba::cuda::block_max(tile_max, scratch));
    const float correction = expf(running_max - new_max);  // 0 on the first tile
    float tile_sum = 0.0f;
    for (int64_t s = tid; s < len; s += kThreads) tile_sum += w_s[s] = expf(w_s[s] - new_max);
    running_sum = running_sum * correction + mamba::cuda::block_sum(tile_sum, scratch);  // syncs w_s too
    running_max = new_max;
#pragma unroll
    for (int i = 0; i < kDimsPerThread; ++i) {
      const int64_t e = tid + i * kThreads;
      if (e >= hd) break;
      float a = acc[i] * correction;
      for (int64_t s = 0; s < len; ++s) a += w_s[s] * v_base[(s0 + s) * key_stride + e];
      acc[i] = a;
    }
    __syncthreads();  // w_s is rewritten by the next tile
  }
#pragma unroll
  for (int i = 0; i < kDimsPerThread; ++i) {
    const int64_t e = tid + i * kThreads;
    if (e < hd) p.out[blockIdx.x * hd + e] = acc[i] / running_sum;
  }
}

// Rotates pairs (j, j + rotary_dim/2) or (2j, 2j+1) of every head by sign·position·base^(−2j/rotary_dim)
// (sign −1: the inverse rotation, the backward).
__global__ void rotary_kernel(float* x, int64_t batch, int64_t seq_len, int64_t heads, int64_t head_dim,
                              int64_t rotary_dim, int64_t pos0, float base, bool interleaved, float sign) {
  const int64_t half = rotary_dim / 2;
  MAMBA_GRID_STRIDE_LOOP(i, batch * seq_len * heads * half) {
    const int64_t j = i % half, bth = i / half, t = (bth / heads) % seq_len;
    const float inv_freq = 1.0f / powf(base, static_cast<float>(2 * j) / static_cast<float>(rotary_dim));
    const float angle = static_cast<float>(pos0 + t) * inv_freq;
    const float c = cosf(angle), s = sign * sinf(angle);
    float* v = x + bth * head_dim;
    const int64_t i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + half;
    const float a = v[i0], bb = v[i1];
    v[i0] = a * c - bb * s;
    v[i1] = a * s + bb * c;
  }
}

}  // namespace

Tensor attention_fwd_cuda(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t pos,
                          float scale) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k_cache, &v_cache}) {
    mamba::cuda::check_cuda_tensor(*t, "attention argument");
    MAMBA_CHECK(t->is_contiguous() && t->dtype() == DType::f32 && t->dim() == 4);
  }
  const int64_t batch = q.size(0), seq_len = q.size(1), n_heads = q.size(2), head_dim = q.size(3);
  const int64_t cap = k_cache.size(1), n_kv = k_cache.size(2);
  MAMBA_CHECK(pos + seq_len <= cap && n_heads % n_kv == 0 && k_cache.size(3) == head_dim &&
              v_cache.shape() == k_cache.shape() && k_cache.size(0) == batch);
  MAMBA_CHECK(head_dim <= kMaxHeadDim, "attention (CUDA): head_dim " << head_dim << " > " << kMaxHeadDim);
  Tensor out = Tensor::empty(q.shape(), DType::f32, Device::cuda);
  const int64_t blocks = batch * seq_len * n_heads;
  if (blocks == 0) return out;
  const AttentionParams p{q.f32(), k_cache.f32(), v_cache.f32(), out.f32(), batch, seq_len,
                          n_heads, n_kv,          head_dim,      cap,       pos,   scale};
  attention_fwd_kernel<<<static_cast<unsigned int>(blocks), kThreads, 0, mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  return out;
}

void rotary_rotate_cuda(Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved,
                        float sign) {
  mamba::cuda::check_cuda_tensor(x, "rotary: x");
  MAMBA_CHECK(x.is_contiguous() && x.dim() == 4 && x.dtype() == DType::f32 && rotary_dim % 2 == 0 &&
              rotary_dim <= x.size(3));
  const int64_t n = x.size(0) * x.size(1) * x.size(2) * (rotary_dim / 2);
  if (n == 0) return;
  rotary_kernel<<<mamba::cuda::grid_for(n), 256, 0, mamba::cuda::stream()>>>(
      x.f32(), x.size(0), x.size(1), x.size(2), x.size(3), rotary_dim, pos0, base, interleaved, sign);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mamba::ops
