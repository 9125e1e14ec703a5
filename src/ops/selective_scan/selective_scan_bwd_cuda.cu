// Backward of the Mamba-1 selective scan on CUDA (training): same contract and fp32 math as
// selective_scan_bwd (selective_scan_bwd.cpp), whole sequence from a zero state.
//   1. scan_bwd_checkpoints: LANES lanes per (batch, channel) run the forward, storing the state
//      at the start of every segment of K tokens (lane l holds the entries n = l % LANES + LANES·j,
//      j < SLOTS; LANES = 16 for d_state <= 16, Mamba-1's usual size, so two channels share a warp).
//   2. scan_bwd_main: the same lanes walk the segments in reverse: it re-runs the segment from its
//      checkpoint keeping the K states in registers (K·SLOTS = 32), then runs the reverse
//      recurrence dh_{t−1} = exp(δ_t·A)·dh_t over them. The warps of a block are channels of one
//      sequence: dB and dC (shared by the channels) are summed over them in shared memory, then
//      added to the zeroed outputs with atomics, as are dA, dD and dδ_bias over the batch.
// Sequential in time per channel, parallel over batch × d_inner (thousands of warps at Mamba-1
// sizes).
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/selective_scan/selective_scan.h"

namespace mamba::ops {

namespace {

constexpr int kWarps = 8;  // warps per block of the main kernel (32·kWarps / LANES channels)

struct BwdParams {
  const float *u, *delta, *delta_bias, *A, *B, *C, *D, *z, *dy;
  float *du, *ddelta, *ddelta_bias, *dA, *dB, *dC, *dD, *dz;
  float* ckpt;  // [batch·d_inner, n_segments, d_state]
  int64_t batch, L, DI, N, n_seg;
  int64_t B_b, B_t, C_b, C_t, z_b, z_t;
};

template <int SLOTS, int LANES>
__device__ __forceinline__ void load_row(const float* v, int64_t N, float (&out)[SLOTS]) {
  const int lane = threadIdx.x & (LANES - 1);
#pragma unroll
  for (int j = 0; j < SLOTS; ++j) {
    const int64_t n = lane + LANES * j;
    out[j] = n < N ? v[n] : 0.0f;
  }
}

// Sum over the LANES lanes of one channel (aligned groups of the warp); all of them get it.
template <int LANES>
__device__ __forceinline__ float lanes_sum(float v) {
#pragma unroll
  for (int off = LANES / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <int SLOTS, int K, int LANES>
__global__ void scan_bwd_checkpoints(BwdParams p) {
  const int lane = threadIdx.x & (LANES - 1);
  const int64_t bd = blockIdx.x * int64_t(blockDim.x / LANES) + threadIdx.x / LANES;
  if (bd >= p.batch * p.DI) return;
  const int64_t b = bd / p.DI, d = bd % p.DI, N = p.N;
  float h[SLOTS] = {}, A[SLOTS];
  load_row<SLOTS, LANES>(p.A + d * N, N, A);
  const float bias = p.delta_bias[d];
  for (int64_t t = 0; t < p.L; ++t) {
    if (t % K == 0) {
#pragma unroll
      for (int j = 0; j < SLOTS; ++j) {
        const int64_t n = lane + LANES * j;
        if (n < N) p.ckpt[(bd * p.n_seg + t / K) * N + n] = h[j];
      }
    }
    const int64_t i = (b * p.L + t) * p.DI + d;
    const float delta = mamba::cuda::softplus_f(p.delta[i] + bias), du = delta * p.u[i];
    float Bn[SLOTS];
    load_row<SLOTS, LANES>(p.B + b * p.B_b + t * p.B_t, N, Bn);
#pragma unroll
    for (int j = 0; j < SLOTS; ++j) h[j] = expf(delta * A[j]) * h[j] + du * Bn[j];
  }
}

template <int SLOTS, int K, int LANES>
__global__ void __launch_bounds__(32 * kWarps) scan_bwd_main(BwdParams p) {
  __shared__ float s_dB[K][LANES * SLOTS], s_dC[K][LANES * SLOTS];
  const int lane = threadIdx.x & (LANES - 1);
  const int64_t b = blockIdx.y, d_raw = blockIdx.x * int64_t(32 * kWarps / LANES) + threadIdx.x / LANES;
  const bool valid = d_raw < p.DI;
  const int64_t d = valid ? d_raw : p.DI - 1, bd = b * p.DI + d, N = p.N, L = p.L;
  for (int i = threadIdx.x; i < K * LANES * SLOTS; i += blockDim.x)
    (&s_dB[0][0])[i] = (&s_dC[0][0])[i] = 0.0f;
  __syncthreads();
  float A[SLOTS], dh[SLOTS] = {}, dA[SLOTS] = {};
  load_row<SLOTS, LANES>(p.A + d * N, N, A);
  const float bias = p.delta_bias[d], Dd = p.D[d];
  float dD = 0.0f, dbias = 0.0f;
  for (int64_t seg = p.n_seg - 1; seg >= 0; --seg) {
    const int64_t t0 = seg * K;
    const int len = static_cast<int>(min(int64_t(K), L - t0));
    // Re-run the segment from its checkpoint: hs[k] = h after token t0 + k.
    float h0[SLOTS], hs[K][SLOTS], delta[K];
    load_row<SLOTS, LANES>(p.ckpt + (bd * p.n_seg + seg) * N, N, h0);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (k < len) {
        const int64_t t = t0 + k, i = (b * L + t) * p.DI + d;
        delta[k] = mamba::cuda::softplus_f(p.delta[i] + bias);
        const float du = delta[k] * p.u[i];
        float Bn[SLOTS];
        load_row<SLOTS, LANES>(p.B + b * p.B_b + t * p.B_t, N, Bn);
#pragma unroll
        for (int j = 0; j < SLOTS; ++j)
          hs[k][j] = expf(delta[k] * A[j]) * (k > 0 ? hs[k - 1][j] : h0[j]) + du * Bn[j];
      }
    }
#pragma unroll
    for (int k = K - 1; k >= 0; --k) {
      if (k < len) {
        const int64_t t = t0 + k, i = (b * L + t) * p.DI + d;
        const float u = p.u[i], dl = delta[k];
        float Bn[SLOTS], Cn[SLOTS];
        load_row<SLOTS, LANES>(p.B + b * p.B_b + t * p.B_t, N, Bn);
        load_row<SLOTS, LANES>(p.C + b * p.C_b + t * p.C_t, N, Cn);
        float dy0 = valid ? p.dy[i] : 0.0f;
        if (p.z) {  // y = y0·silu(z)
          float y0 = 0.0f;
#pragma unroll
          for (int j = 0; j < SLOTS; ++j) y0 += Cn[j] * hs[k][j];
          y0 = lanes_sum<LANES>(y0) + Dd * u;
          const float zv = p.z[b * p.z_b + t * p.z_t + d], sg = mamba::cuda::sigmoid_f(zv);
          if (valid && lane == 0) p.dz[i] = dy0 * y0 * (sg * (1.0f + zv * (1.0f - sg)));
          dy0 *= mamba::cuda::silu_f(zv);
        }
        dD += dy0 * u;
        float s_decay = 0.0f, s_B = 0.0f;  // Σ dh·A·α·h_prev, Σ dh·B
#pragma unroll
        for (int j = 0; j < SLOTS; ++j) {
          dh[j] += dy0 * Cn[j];
          const float a = expf(dl * A[j]), h_prev = k > 0 ? hs[k - 1][j] : h0[j];
          s_decay += dh[j] * A[j] * a * h_prev;
          s_B += dh[j] * Bn[j];
          dA[j] += dh[j] * dl * a * h_prev;
          atomicAdd(&s_dC[k][lane + LANES * j], dy0 * hs[k][j]);
          atomicAdd(&s_dB[k][lane + LANES * j], dh[j] * dl * u);
          dh[j] *= a;
        }
        s_decay = lanes_sum<LANES>(s_decay);
        s_B = lanes_sum<LANES>(s_B);
        const float x = p.delta[i] + bias;
        const float draw = (s_decay + u * s_B) * (x <= 20.0f ? mamba::cuda::sigmoid_f(x) : 1.0f);
        if (valid && lane == 0) {
          p.du[i] = Dd * dy0 + dl * s_B;
          p.ddelta[i] = draw;
        }
        dbias += draw;
      }
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < len * N; e += blockDim.x) {
      const int64_t k = e / N, n = e % N, o = (b * L + t0 + k) * N + n;
      atomicAdd(p.dB + o, s_dB[k][n]);
      atomicAdd(p.dC + o, s_dC[k][n]);
      s_dB[k][n] = s_dC[k][n] = 0.0f;
    }
    __syncthreads();
  }
  if (!valid) return;
#pragma unroll
  for (int j = 0; j < SLOTS; ++j) {
    const int64_t n = lane + LANES * j;
    if (n < N) atomicAdd(p.dA + d * N + n, dA[j]);
  }
  if (lane == 0) {
    atomicAdd(p.dD + d, dD);
    atomicAdd(p.ddelta_bias + d, dbias);
  }
}

template <int SLOTS, int LANES>
void launch(BwdParams p) {
  constexpr int K = 32 / SLOTS;  // K·SLOTS registers of segment states
  p.n_seg = (p.L + K - 1) / K;
  const Tensor ckpt = Tensor::empty({p.batch * p.DI, p.n_seg, p.N}, DType::f32, Device::cuda);
  p.ckpt = ckpt.f32();
  cudaStream_t s = mamba::cuda::stream();
  scan_bwd_checkpoints<SLOTS, K, LANES><<<mamba::cuda::ceil_div(p.batch * p.DI, 128 / LANES), 128, 0, s>>>(p);
  CUDA_CHECK_LAUNCH();
  const dim3 grid(mamba::cuda::ceil_div(p.DI, 32 * kWarps / LANES), static_cast<unsigned>(p.batch));
  scan_bwd_main<SLOTS, K, LANES><<<grid, 32 * kWarps, 0, s>>>(p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

SelectiveScanGrads selective_scan_bwd_cuda(const SelectiveScanArgs& a, const Tensor& dy_in) {
  for (const Tensor* t :
       std::initializer_list<const Tensor*>{&a.u, &a.delta, &a.delta_bias, &a.A, &a.B, &a.C, &a.D, &dy_in})
    mamba::cuda::check_cuda_tensor(*t, "selective_scan_bwd argument");
  const int64_t batch = a.u.size(0), L = a.u.size(1), DI = a.u.size(2), N = a.A.size(1);
  MAMBA_CHECK(a.u.is_contiguous() && a.delta.is_contiguous() && a.delta.shape() == a.u.shape());
  MAMBA_CHECK(a.A.is_contiguous() && a.A.size(0) == DI);
  MAMBA_CHECK(a.B.stride(2) == 1 && a.C.stride(2) == 1 && a.B.size(2) == N && a.C.size(2) == N);
  MAMBA_CHECK(!a.z.defined() || (a.z.device() == Device::cuda && a.z.stride(2) == 1));
  MAMBA_CHECK(N <= 256, "selective_scan_bwd (CUDA): d_state " << N << " > 256");
  const Tensor dy = dy_in.contiguous();
  MAMBA_CHECK(dy.shape() == a.u.shape());
  const bool gated = a.z.defined();
  SelectiveScanGrads g;
  g.du = Tensor::zeros({batch, L, DI}, DType::f32, Device::cuda);
  g.ddelta = Tensor::zeros({batch, L, DI}, DType::f32, Device::cuda);
  if (gated) g.dz = Tensor::zeros({batch, L, DI}, DType::f32, Device::cuda);
  g.ddelta_bias = Tensor::zeros({DI}, DType::f32, Device::cuda);
  g.dA = Tensor::zeros({DI, N}, DType::f32, Device::cuda);
  g.dB = Tensor::zeros({batch, L, N}, DType::f32, Device::cuda);
  g.dC = Tensor::zeros({batch, L, N}, DType::f32, Device::cuda);
  g.dD = Tensor::zeros({DI}, DType::f32, Device::cuda);
  if (batch == 0 || L == 0 || DI == 0) return g;
  BwdParams p{};
  p.u = a.u.f32(), p.delta = a.delta.f32(), p.delta_bias = a.delta_bias.f32(), p.A = a.A.f32();
  p.B = a.B.f32(), p.C = a.C.f32(), p.D = a.D.f32(), p.z = gated ? a.z.f32() : nullptr, p.dy = dy.f32();
  p.du = g.du.f32(), p.ddelta = g.ddelta.f32(), p.ddelta_bias = g.ddelta_bias.f32(), p.dA = g.dA.f32();
  p.dB = g.dB.f32(), p.dC = g.dC.f32(), p.dD = g.dD.f32(), p.dz = gated ? g.dz.f32() : nullptr;
  p.batch = batch, p.L = L, p.DI = DI, p.N = N;
  p.B_b = a.B.stride(0), p.B_t = a.B.stride(1), p.C_b = a.C.stride(0), p.C_t = a.C.stride(1);
  p.z_b = gated ? a.z.stride(0) : 0, p.z_t = gated ? a.z.stride(1) : 0;
  MAMBA_CHECK(batch <= 65535, "selective_scan_bwd (CUDA): batch " << batch << " > 65535");
  if (N <= 16)
    launch<1, 16>(p);
  else if (N <= 32)
    launch<1, 32>(p);
  else if (N <= 64)
    launch<2, 32>(p);
  else if (N <= 128)
    launch<4, 32>(p);
  else
    launch<8, 32>(p);
  return g;
}

}  // namespace mamba::ops
