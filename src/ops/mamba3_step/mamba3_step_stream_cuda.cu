// Mamba-3 SISO decode step at large batches, without the head-wise output norm: three stages
// instead of the fused kernel's one block per (batch row, head). The fused kernel's per-block gate
// prologue (norms, rotation, barriers) serializes with its state streaming; at batch 128 it reached
// about 75% of the bandwidth the state update needs. Here
//   1. the prefill's prepare (mamba3_gates_cuda.cu: one block per batch row over all heads) writes
//      q/k and the gate scalars and advances the angle,
//   2. a streaming kernel shaped like the Mamba-2 step (ssd_step.cu: one warp per 4 state rows,
//      each lane 4 consecutive d_state entries, no block-wide barrier) updates the state, forms
//      y = S·q + D·x and the gated output o = y·silu(z),
//   3. a small kernel stores this token's key and x as the next token's previous ones (the
//      streaming blocks of a head all read the old ones, so they cannot be overwritten there).
// Same expressions as the fused kernel (mamba3_step_cuda.cu); only the order of the S·q sums and
// of the RMS sums of the prepare differ.
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_step/mamba3_step.h"

namespace mamba::ops {

namespace {

constexpr int kWarps = 8;
constexpr int kRowsPerWarp = 4;
constexpr int kStateN = 128;  // d_state of this path: one float4 per lane per row

struct StreamParams {
  const float* proj;  // [batch, width]: z at column h·P + p, x at H·P + h·P + p
  int64_t proj_stride;
  const float *q, *k, *adt, *dt, *trap, *D;  // q/k [batch, H, N], scalars [batch, H] (prepare)
  const float *k_prev, *v_prev;              // the previous token's key and x (read only here)
  float *ssm, *o;
  int n_heads, head_dim;
};

__global__ void __launch_bounds__(32 * kWarps) mamba3_step_stream_kernel(const StreamParams p) {
  const int b = blockIdx.z, h = blockIdx.y, lane = threadIdx.x & 31;
  const int H = p.n_heads, P = p.head_dim, N = kStateN;
  const int p0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRowsPerWarp;  // head_dim % 32 == 0
  const int64_t bh = int64_t(b) * H + h;
  float* state = p.ssm + bh * P * N + 4 * lane;
  // The state was last written by this layer's previous step: its loads may precede the wait.
  float4 s[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i)
    s[i] = __ldcs(reinterpret_cast<const float4*>(state + int64_t(p0 + i) * N));
  mamba::cuda::grid_dependency_wait();
  mamba::cuda::allow_dependents();
  const float dt = p.dt[bh], lambda = p.trap[bh], D = p.D[h];
  const float alpha = expf(p.adt[bh]);
  const float beta = (1.0f - lambda) * dt * alpha, gamma = lambda * dt;
  const float4 kb = __ldg(reinterpret_cast<const float4*>(p.k_prev + bh * N + 4 * lane));
  const float4 kn = __ldg(reinterpret_cast<const float4*>(p.k + bh * N + 4 * lane));
  const float4 q = __ldg(reinterpret_cast<const float4*>(p.q + bh * N + 4 * lane));
  const float* row = p.proj + b * p.proj_stride;
  float x[kRowsPerWarp], z[kRowsPerWarp], acc[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int prow = p0 + i;
    x[i] = row[int64_t(H) * P + h * P + prow];
    z[i] = row[h * P + prow];
    const float cb = beta * p.v_prev[bh * P + prow], cn = gamma * x[i];
    float4 v = s[i];
    v.x *= alpha, v.y *= alpha, v.z *= alpha, v.w *= alpha;
    v.x += cb * kb.x + cn * kn.x;
    v.y += cb * kb.y + cn * kn.y;
    v.z += cb * kb.z + cn * kn.z;
    v.w += cb * kb.w + cn * kn.w;
    __stcs(reinterpret_cast<float4*>(state + int64_t(prow) * N), v);
    acc[i] = v.x * q.x + v.y * q.y + v.z * q.z + v.w * q.w;
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const float y = mamba::cuda::warp_sum(acc[i]) + D * x[i];
    if (lane == i) p.o[bh * P + p0 + i] = y * mamba::cuda::silu_f(z[i]);
  }
}

// k_prev = this token's key, v_prev = its x.
__global__ void mamba3_step_save_kernel(const float* k, const float* proj, int64_t proj_stride, float* k_prev,
                                        float* v_prev, int64_t batch, int n_heads, int head_dim) {
  const int64_t H = n_heads, P = head_dim, n_k = batch * H * kStateN;
  MAMBA_GRID_STRIDE_LOOP(i, n_k + batch * H * P) {
    if (i < n_k) {
      k_prev[i] = k[i];
    } else {
      const int64_t j = i - n_k, b = j / (H * P), hp = j % (H * P);
      v_prev[j] = proj[b * proj_stride + H * P + hp];
    }
  }
}

}  // namespace

bool mamba3_step_stream_applies(const KernelPlan& plan, int64_t batch, const Mamba3Gates& g,
                                const Mamba3StepParams& w) {
  using Mode = KernelPlan::Mamba3Step;  // fused | stream: timing comparisons
  if (g.rank != 1 || w.mimo_x.defined() || w.norm_weight.defined() || g.d_state != kStateN ||
      g.head_dim % (kWarps * kRowsPerWarp) != 0 || plan.mamba3_step == Mode::fused)
    return false;
  // From about 8 blocks' worth of heads per SM the fused kernel's prologue stops hiding.
  return plan.mamba3_step == Mode::stream ||
         batch * g.n_heads >= int64_t(8) * mamba::cuda::device_info().multiprocessors;
}

void mamba3_step_stream_cuda(Exec& exec, const Tensor& proj_in, const Mamba3Gates& g,
                             const Mamba3StepParams& w, Tensor& angle, Mamba3ScanState& state, Tensor& o) {
  const int64_t batch = proj_in.size(0), H = g.n_heads, P = g.head_dim;
  const Tensor proj = proj_in.is_contiguous() ? proj_in : proj_in.contiguous();  // the prepare's layout
  Mamba3ScanArgs a;                                                              // f32 q/k
  {
    const OpScope timer(exec, "prepare", Device::cuda);
    cuda_kernels().mamba3_gates.prepare_fwd(proj.view({batch, 1, proj.size(1)}), g, angle, a);
  }
  const OpScope timer(exec, "state update + key store", Device::cuda);
  const StreamParams p{proj.f32(),          proj.stride(0),     a.q.f32(),       a.k.f32(),
                       a.adt.f32(),         a.dt.f32(),         a.trap.f32(),    w.D.f32(),
                       state.k_prev.f32(),  state.v_prev.f32(), state.ssm.f32(), o.f32(),
                       static_cast<int>(H), static_cast<int>(P)};
  const dim3 grid(static_cast<unsigned int>(P / (kWarps * kRowsPerWarp)), static_cast<unsigned int>(H),
                  static_cast<unsigned int>(batch));
  mamba::cuda::launch_dependent({grid, dim3(32 * kWarps)}, mamba3_step_stream_kernel, p);
  CUDA_CHECK_LAUNCH();
  mamba3_step_save_kernel<<<mamba::cuda::grid_for(batch * H * (kStateN + P)), 256, 0,
                            mamba::cuda::stream()>>>(a.k.f32(), proj.f32(), proj.stride(0),
                                                     state.k_prev.f32(), state.v_prev.f32(), batch,
                                                     static_cast<int>(H), static_cast<int>(P));
  CUDA_CHECK_LAUNCH();
}

}  // namespace mamba::ops
