// Backward of causal GQA attention on CUDA (whole sequences from position 0, the formulas of
// attention_bwd.cpp; rotary_bwd is rotary_rotate_cuda with sign −1). Two deterministic kernels, no
// atomics, keys streamed in tiles:
//  - per (batch, query, head): the softmax max and sum (online over tiles), D = Σ_s p_s·dp_s
//    with dp_s = dout·v_s, and dq = scale·Σ_s p_s·(dp_s − D)·k_s; it saves max, sum and D.
//  - per (batch, key, kv head): over the query heads of its group and the queries t ≥ s,
//    dk = scale·Σ p·(dp − D)·q_t and dv = Σ p·dout_t, recomputing p from the saved statistics.
// Thread i owns head dims i, i + kThreads. Rotary backward: the transposed rotation in place.
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/attention/attention.h"

namespace mamba::ops {

namespace {

constexpr int kThreads = 128;
constexpr int kTile = 256;  // keys (or queries) per tile
constexpr int kMaxHeadDim = 256;
constexpr int kDimsPerThread = kMaxHeadDim / kThreads;

struct AttentionBwdParams {
  const float *q, *k, *v, *dout;     // q, dout [batch, seq_len, n_heads, hd]; k, v [batch, seq_len, n_kv, hd]
  float *dq, *dk, *dv;               // shaped like q, k, v
  float *row_max, *row_sum, *row_d;  // [batch, seq_len, n_heads]
  int64_t batch, seq_len, n_heads, n_kv_heads, head_dim;
  float scale;
};

__device__ __forceinline__ float dot_row(const float* a_shared, const float* b, int64_t hd) {
  float dot = 0.0f;
  for (int64_t e = 0; e < hd; ++e) dot += a_shared[e] * b[e];
  return dot;
}

__global__ void attention_bwd_query_kernel(AttentionBwdParams p) {
  __shared__ float q_s[kMaxHeadDim], go_s[kMaxHeadDim];
  __shared__ float w_s[kTile];
  __shared__ float scratch[32];
  const int64_t H = p.n_heads, hd = p.head_dim;
  const int64_t h = blockIdx.x % H, t = (blockIdx.x / H) % p.seq_len, b = blockIdx.x / (H * p.seq_len);
  const int64_t kvh = h / (H / p.n_kv_heads), n_keys = t + 1;
  const int tid = threadIdx.x;
  for (int64_t e = tid; e < hd; e += kThreads) {
    q_s[e] = p.q[blockIdx.x * hd + e];
    go_s[e] = p.dout[blockIdx.x * hd + e];
  }
  const int64_t key_stride = p.n_kv_heads * hd;
  const float* k_base = p.k + (b * p.seq_len * p.n_kv_heads + kvh) * hd;
  const float* v_base = p.v + (b * p.seq_len * p.n_kv_heads + kvh) * hd;
  __syncthreads();
  // Pass 1: softmax max and sum, online over tiles (each thread keeps its own partial terms).
  float running_max = -INFINITY, running_sum = 0.0f;
  for (int64_t s0 = 0; s0 < n_keys; s0 += kTile) {
    const int64_t len = min(static_cast<int64_t>(kTile), n_keys - s0);
    float tile_max = -INFINITY;
    for (int64_t s = tid; s < len; s += kThreads) {
      w_s[s] = dot_row(q_s, k_base + (s0 + s) * key_stride, hd) * p.scale;
      tile_max = fmaxf(tile_max, w_s[s]);
    }
    const float new_max = fmaxf(running_max, mamba::cuda::block_max(tile_max, scratch));
    float tile_sum = 0.0f;
    for (int64_t s = tid; s < len; s += kThreads) tile_sum += expf(w_s[s] - new_max);
    running_sum = running_sum * expf(running_max - new_max) + mamba::cuda::block_sum(tile_sum, scratch);
    running_max = new_max;
  }
  const float mx = running_max, inv_sum = 1.0f / running_sum;
  // Pass 2: D = Σ p·dp.
  float d_part = 0.0f;
  for (int64_t s = tid; s < n_keys; s += kThreads) {
    const float prob = expf(dot_row(q_s, k_base + s * key_stride, hd) * p.scale - mx) * inv_sum;
    d_part += prob * dot_row(go_s, v_base + s * key_stride, hd);
  }
  const float D = mamba::cuda::block_sum(d_part, scratch);
  // Pass 3: dq = scale·Σ_s p_s·(dp_s − D)·k_s.
  float acc[kDimsPerThread] = {};
  for (int64_t s0 = 0; s0 < n_keys; s0 += kTile) {
    const int64_t len = min(static_cast<int64_t>(kTile), n_keys - s0);
    __syncthreads();  // w_s of the previous tile has been consumed
    for (int64_t s = tid; s < len; s += kThreads) {
      const float prob = expf(dot_row(q_s, k_base + (s0 + s) * key_stride, hd) * p.scale - mx) * inv_sum;
      w_s[s] = prob * (dot_row(go_s, v_base + (s0 + s) * key_stride, hd) - D) * p.scale;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kDimsPerThread; ++i) {
      const int64_t e = tid + i * kThreads;
      if (e >= hd) break;
      float a = acc[i];
      for (int64_t s = 0; s < len; ++s) a += w_s[s] * k_base[(s0 + s) * key_stride + e];
      acc[i] = a;
    }
  }
#pragma unroll
  for (int i = 0; i < kDimsPerThread; ++i) {
    const int64_t e = tid + i * kThreads;
    if (e < hd) p.dq[blockIdx.x * hd + e] = acc[i];
  }
  if (tid == 0) {
    p.row_max[blockIdx.x] = mx;
    p.row_sum[blockIdx.x] = running_sum;
    p.row_d[blockIdx.x] = D;
  }
}

// Block = (batch, key s, kv head): dk, dv of key s over every query t ≥ s of its query heads.
__global__ void attention_bwd_key_kernel(AttentionBwdParams p) {
  __shared__ float k_s[kMaxHeadDim], v_s[kMaxHeadDim];
  __shared__ float p_s[kTile], ds_s[kTile];
  const int64_t H = p.n_heads, hd = p.head_dim, n_kv = p.n_kv_heads, group = H / n_kv;
  const int64_t kvh = blockIdx.x % n_kv, s = (blockIdx.x / n_kv) % p.seq_len,
                b = blockIdx.x / (n_kv * p.seq_len);
  const int tid = threadIdx.x;
  for (int64_t e = tid; e < hd; e += kThreads) {
    k_s[e] = p.k[blockIdx.x * hd + e];
    v_s[e] = p.v[blockIdx.x * hd + e];
  }
  float dk_acc[kDimsPerThread] = {}, dv_acc[kDimsPerThread] = {};
  const int64_t q_stride = H * hd;  // between tokens
  for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
    const float* q_base = p.q + (b * p.seq_len * H + h) * hd;
    const float* go_base = p.dout + (b * p.seq_len * H + h) * hd;
    const int64_t stat_base = b * p.seq_len * H + h;  // + t·H
    for (int64_t t0 = s; t0 < p.seq_len; t0 += kTile) {
      const int64_t len = min(static_cast<int64_t>(kTile), p.seq_len - t0);
      __syncthreads();  // k_s/v_s loaded; p_s/ds_s of the previous tile consumed
      for (int64_t j = tid; j < len; j += kThreads) {
        const int64_t t = t0 + j, st = stat_base + t * H;
        const float prob =
            expf(dot_row(k_s, q_base + t * q_stride, hd) * p.scale - p.row_max[st]) / p.row_sum[st];
        p_s[j] = prob;
        ds_s[j] = prob * (dot_row(v_s, go_base + t * q_stride, hd) - p.row_d[st]) * p.scale;
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kDimsPerThread; ++i) {
        const int64_t e = tid + i * kThreads;
        if (e >= hd) break;
        float a = dk_acc[i], c = dv_acc[i];
        for (int64_t j = 0; j < len; ++j) {
          a += ds_s[j] * q_base[(t0 + j) * q_stride + e];
          c += p_s[j] * go_base[(t0 + j) * q_stride + e];
        }
        dk_acc[i] = a;
        dv_acc[i] = c;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kDimsPerThread; ++i) {
    const int64_t e = tid + i * kThreads;
    if (e < hd) {
      p.dk[blockIdx.x * hd + e] = dk_acc[i];
      p.dv[blockIdx.x * hd + e] = dv_acc[i];
    }
  }
}

}  // namespace

void attention_bwd_cuda(const Tensor& dout_in, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        Tensor& dq, Tensor& dk, Tensor& dv) {
  const Tensor dout = dout_in.contiguous();
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dout, &q, &k, &v}) {
    mamba::cuda::check_cuda_tensor(*t, "attention_bwd argument");
    MAMBA_CHECK(t->is_contiguous() && t->dtype() == DType::f32 && t->dim() == 4);
  }
  const int64_t batch = q.size(0), seq_len = q.size(1), n_heads = q.size(2), head_dim = q.size(3);
  const int64_t n_kv = k.size(2);
  MAMBA_CHECK(k.shape() == v.shape() && dout.shape() == q.shape() && k.size(0) == batch &&
                  k.size(1) == seq_len && k.size(3) == head_dim && n_kv > 0 && n_heads % n_kv == 0,
              "attention_bwd: q " << shape_str(q.shape()) << " k " << shape_str(k.shape()));
  MAMBA_CHECK(head_dim <= kMaxHeadDim, "attention_bwd (CUDA): head_dim " << head_dim << " > " << kMaxHeadDim);
  dq = Tensor::empty(q.shape(), DType::f32, Device::cuda);
  dk = Tensor::empty(k.shape(), DType::f32, Device::cuda);
  dv = Tensor::empty(v.shape(), DType::f32, Device::cuda);
  const int64_t q_blocks = batch * seq_len * n_heads, k_blocks = batch * seq_len * n_kv;
  if (q_blocks == 0 || head_dim == 0) {
    dq.zero();
    dk.zero();
    dv.zero();
    return;
  }
  Tensor stats = Tensor::empty({3, q_blocks}, DType::f32, Device::cuda);
  const AttentionBwdParams p{q.f32(),
                             k.f32(),
                             v.f32(),
                             dout.f32(),
                             dq.f32(),
                             dk.f32(),
                             dv.f32(),
                             stats.f32(),
                             stats.f32() + q_blocks,
                             stats.f32() + 2 * q_blocks,
                             batch,
                             seq_len,
                             n_heads,
                             n_kv,
                             head_dim,
                             scale};
  attention_bwd_query_kernel<<<static_cast<unsigned int>(q_blocks), kThreads, 0, mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  attention_bwd_key_kernel<<<static_cast<unsigned int>(k_blocks), kThreads, 0, mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mamba::ops
