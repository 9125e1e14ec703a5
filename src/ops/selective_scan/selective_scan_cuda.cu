// Mamba-1 selective scan on CUDA: one thread per (batch, channel) walks the sequence; the state is
// held in registers 16 entries of d_state at a time, each slice adding its C·h share into y, and
// a last pass over y adds D·u and the silu(z) gate. Simple and exact; not tuned. One token
// (decode) takes a kernel of its own, several threads per channel.
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/selective_scan/selective_scan.h"

namespace mamba::ops {

namespace {

constexpr int kSlice = 16;  // state entries per register slice

struct ScanParams {
  const float *u, *delta, *delta_bias, *A, *B, *C, *D, *z;
  float *y, *state;
  int64_t batch, seq_len, d_inner, d_state;
  int64_t B_batch_stride, B_seq_stride, C_batch_stride, C_seq_stride, z_batch_stride, z_seq_stride;
};

// δ = softplus(δ_raw + bias); h = exp(δ·A)·h + δ·u·B_t; y_t += C_t·h over this thread's slice
// [n0, n0 + kSlice) (SPEC §1.2 step 5). The first slice writes y, later slices add to it.
__global__ void selective_scan_fwd_kernel(ScanParams p) {
  const int64_t bd = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (bd >= p.batch * p.d_inner) return;
  const int64_t b = bd / p.d_inner, d = bd % p.d_inner;
  const float bias = p.delta_bias[d];
  for (int64_t n0 = 0; n0 < p.d_state; n0 += kSlice) {
    float h[kSlice], A[kSlice];
#pragma unroll
    for (int j = 0; j < kSlice; ++j) {
      const bool in = n0 + j < p.d_state;
      h[j] = in ? p.state[bd * p.d_state + n0 + j] : 0.0f;
      A[j] = in ? p.A[d * p.d_state + n0 + j] : 0.0f;
    }
    for (int64_t t = 0; t < p.seq_len; ++t) {
      const int64_t i = (b * p.seq_len + t) * p.d_inner + d;
      const float delta = mamba::cuda::softplus_f(p.delta[i] + bias);
      const float du = delta * p.u[i];
      const float* Bt = p.B + b * p.B_batch_stride + t * p.B_seq_stride + n0;
      const float* Ct = p.C + b * p.C_batch_stride + t * p.C_seq_stride + n0;
      float acc = 0.0f;
#pragma unroll
      for (int j = 0; j < kSlice; ++j) {
        if (n0 + j < p.d_state) {
          h[j] = expf(delta * A[j]) * h[j] + du * Bt[j];
          acc += Ct[j] * h[j];
        }
      }
      p.y[i] = n0 == 0 ? acc : p.y[i] + acc;
    }
#pragma unroll
    for (int j = 0; j < kSlice; ++j) {
      if (n0 + j < p.d_state) p.state[bd * p.d_state + n0 + j] = h[j];
    }
  }
  // y_t ← (y_t + D·u_t)·silu(z_t).
  for (int64_t t = 0; t < p.seq_len; ++t) {
    const int64_t i = (b * p.seq_len + t) * p.d_inner + d;
    float out = (p.d_state > 0 ? p.y[i] : 0.0f) + p.D[d] * p.u[i];
    if (p.z) out *= mamba::cuda::silu_f(p.z[b * p.z_batch_stride + t * p.z_seq_stride + d]);
    p.y[i] = out;
  }
}

// One token (decode): kLanes threads per (batch, channel), lane j updating the state entries
// j, j + kLanes, ... and the C·h sum reduced across the lanes by shuffles. The kernel above runs
// one thread per channel, which for a single token leaves most of the GPU idle. The state update
// is the same expression; the sum over the state is taken in another order (a tree).
template <int kLanes>
__global__ void selective_scan_step_kernel(ScanParams p) {
  const int64_t group = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kLanes;
  const int lane = static_cast<int>(threadIdx.x % kLanes);
  const bool active = group < p.batch * p.d_inner;  // every lane of a warp takes part in the shuffles
  const int64_t bd = active ? group : 0, b = bd / p.d_inner, d = bd % p.d_inner;
  const int64_t i = bd;  // (b·seq_len + 0)·d_inner + d with seq_len 1
  float acc = 0.0f;
  if (active) {
    const float delta = mamba::cuda::softplus_f(p.delta[i] + p.delta_bias[d]);
    const float du = delta * p.u[i];
    const float* Bt = p.B + b * p.B_batch_stride;
    const float* Ct = p.C + b * p.C_batch_stride;
    float* h = p.state + bd * p.d_state;
    const float* A = p.A + d * p.d_state;
    for (int64_t n = lane; n < p.d_state; n += kLanes) {
      const float hn = expf(delta * A[n]) * h[n] + du * Bt[n];
      h[n] = hn;
      acc += Ct[n] * hn;
    }
  }
#pragma unroll
  for (int off = kLanes / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off, kLanes);
  if (!active || lane != 0) return;
  float out = acc + p.D[d] * p.u[i];
  if (p.z) out *= mamba::cuda::silu_f(p.z[b * p.z_batch_stride + d]);
  p.y[i] = out;
}

template <int kLanes>
void launch_step(const ScanParams& p) {
  constexpr int kThreads = 256;
  selective_scan_step_kernel<kLanes>
      <<<mamba::cuda::ceil_div(p.batch * p.d_inner * kLanes, kThreads), kThreads, 0, mamba::cuda::stream()>>>(
          p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

Tensor selective_scan_fwd_cuda(const SelectiveScanArgs& a, Tensor& state) {
  const int64_t batch = a.u.size(0), seq_len = a.u.size(1), d_inner = a.u.size(2), d_state = a.A.size(1);
  for (const Tensor* t :
       std::initializer_list<const Tensor*>{&a.u, &a.delta, &a.delta_bias, &a.A, &a.B, &a.C, &a.D, &state})
    mamba::cuda::check_cuda_tensor(*t, "selective_scan argument");
  MAMBA_CHECK(a.u.is_contiguous() && a.delta.is_contiguous() && a.delta.shape() == a.u.shape());
  MAMBA_CHECK(a.A.is_contiguous() && a.A.size(0) == d_inner);
  MAMBA_CHECK(a.B.stride(2) == 1 && a.C.stride(2) == 1 && a.B.size(2) == d_state && a.C.size(2) == d_state);
  MAMBA_CHECK(state.is_contiguous() && state.shape() == (Shape{batch, d_inner, d_state}));
  MAMBA_CHECK(!a.z.defined() || (a.z.device() == Device::cuda && a.z.stride(2) == 1));
  Tensor y = Tensor::empty({batch, seq_len, d_inner}, DType::f32, Device::cuda);
  if (y.numel() == 0) return y;
  ScanParams p{};
  p.u = a.u.f32();
  p.delta = a.delta.f32();
  p.delta_bias = a.delta_bias.f32();
  p.A = a.A.f32();
  p.B = a.B.f32();
  p.C = a.C.f32();
  p.D = a.D.f32();
  p.z = a.z.defined() ? a.z.f32() : nullptr;
  p.y = y.f32();
  p.state = state.f32();
  p.batch = batch;
  p.seq_len = seq_len;
  p.d_inner = d_inner;
  p.d_state = d_state;
  p.B_batch_stride = a.B.stride(0);
  p.B_seq_stride = a.B.stride(1);
  p.C_batch_stride = a.C.stride(0);
  p.C_seq_stride = a.C.stride(1);
  p.z_batch_stride = p.z ? a.z.stride(0) : 0;
  p.z_seq_stride = p.z ? a.z.stride(1) : 0;
  if (seq_len == 1) {  // lanes per channel: the smallest power of two covering d_state, at most a warp
    if (d_state <= 4) {
      launch_step<4>(p);
    } else if (d_state <= 8) {
      launch_step<8>(p);
    } else if (d_state <= 16) {
      launch_step<16>(p);
    } else {
      launch_step<32>(p);
    }
    return y;
  }
  constexpr int kThreads = 128;
  selective_scan_fwd_kernel<<<mamba::cuda::ceil_div(batch * d_inner, kThreads), kThreads, 0,
                              mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace mamba::ops
