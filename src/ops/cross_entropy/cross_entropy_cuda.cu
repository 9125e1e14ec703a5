// Cross-entropy on CUDA: one block per row, the CPU's arithmetic (float max, Σ exp(x − max) and
// the log in double). The targets are checked on the host (the same errors as the CPU op; they
// are a few ids per row) and uploaded as i64. The loss copies one double per row back and sums
// on the host in row order, so it is deterministic and matches the CPU's double sum.
#include <cmath>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/cross_entropy/cross_entropy_cuda.h"

namespace mamba::ops {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum over the block in double (blockDim.x a multiple of 32); every thread gets the result.
__device__ __forceinline__ double block_sum_d(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum_d(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : 0.0;
  return warp_sum_d(v);
}

// Row r: loss (when row_loss) = lse + max − x[t]; gradient (when dlogits) =
// (softmax − onehot(t)) · inv_n, zero on rows whose target is negative.
__global__ void cross_entropy_kernel(const float* __restrict__ logits, const int64_t* __restrict__ targets,
                                     int64_t vocab, double inv_n, double* __restrict__ row_loss,
                                     float* __restrict__ dlogits) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const int64_t r = blockIdx.x;
  const int64_t t = targets[r];
  const float* x = logits + r * vocab;
  float* g = dlogits ? dlogits + r * vocab : nullptr;
  if (t < 0) {  // uniform over the block: no thread reaches a barrier below
    if (row_loss && threadIdx.x == 0) row_loss[r] = 0.0;
    if (g)
      for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) g[i] = 0.0f;
    return;
  }
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, x[i]);
  mx = mamba::cuda::block_max(mx, fscratch);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) sum += exp(static_cast<double>(x[i]) - mx);
  const double lse = log(block_sum_d(sum, dscratch));
  if (row_loss && threadIdx.x == 0) row_loss[r] = lse + mx - x[t];
  if (!g) return;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    g[i] = static_cast<float>(exp(static_cast<double>(x[i]) - mx - lse) * inv_n);
  __syncthreads();  // g[t] was written by some thread of the block
  if (threadIdx.x == 0) g[t] -= static_cast<float>(inv_n);
}

// Targets checked on the host as the CPU op does, uploaded as contiguous i64.
Tensor upload_targets(const Tensor& logits, const Tensor& targets_in, int64_t& n_counted) {
  const Tensor targets = targets_in.to(Device::cpu).contiguous();
  MAMBA_CHECK(targets.dtype() == DType::i64 || targets.dtype() == DType::i32);
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  MAMBA_CHECK(targets.numel() == rows,
              "targets " << shape_str(targets.shape()) << " logits " << shape_str(logits.shape()));
  Tensor host = Tensor::empty({rows}, DType::i64);
  int64_t* out = host.data<int64_t>();
  n_counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    out[r] = targets.dtype() == DType::i64 ? targets.data<int64_t>()[r] : targets.data<int32_t>()[r];
    if (out[r] >= vocab)
      throw_error(ErrorCode::out_of_range, "target id ", out[r], " at row ", r,
                  " is outside the vocabulary [0, ", vocab, ")");
    if (out[r] >= 0) ++n_counted;
  }
  return host.to(Device::cuda);
}

Tensor checked_logits(const Tensor& logits_in) {
  mamba::cuda::check_cuda_tensor(logits_in, "cross_entropy logits");
  MAMBA_CHECK(logits_in.dtype() == DType::f32,
              "cross_entropy takes f32 logits, got " << dtype_name(logits_in.dtype()));
  return logits_in.contiguous();
}

}  // namespace

double cross_entropy_fwd_cuda(const Tensor& logits_in, const Tensor& targets) {
  const Tensor logits = checked_logits(logits_in);
  int64_t n_counted = 0;
  const Tensor tgt = upload_targets(logits, targets, n_counted);
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  if (rows == 0 || n_counted == 0) return 0.0;
  Tensor row_loss = Tensor::empty({rows}, DType::i64, Device::cuda);  // 8-byte slots holding doubles
  cross_entropy_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, mamba::cuda::stream()>>>(
      logits.f32(), tgt.data<int64_t>(), vocab, 0.0, static_cast<double*>(row_loss.raw()), nullptr);
  CUDA_CHECK_LAUNCH();
  const Tensor host = row_loss.to(Device::cpu);  // synchronizes
  const double* v = static_cast<const double*>(host.raw());
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += v[r];
  return total / static_cast<double>(n_counted);
}

Tensor cross_entropy_bwd_cuda(const Tensor& logits_in, const Tensor& targets) {
  const Tensor logits = checked_logits(logits_in);
  int64_t n_counted = 0;
  const Tensor tgt = upload_targets(logits, targets, n_counted);
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  Tensor dlogits = Tensor::empty(logits.shape(), DType::f32, Device::cuda);
  if (rows == 0 || vocab == 0) return dlogits;
  const double inv_n = n_counted > 0 ? 1.0 / static_cast<double>(n_counted) : 0.0;
  cross_entropy_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, mamba::cuda::stream()>>>(
      logits.f32(), tgt.data<int64_t>(), vocab, inv_n, nullptr, dlogits.f32());
  CUDA_CHECK_LAUNCH();
  return dlogits;
}

}  // namespace mamba::ops
