// Cross-entropy on CUDA: the CPU's arithmetic (float max, Σ exp(x − max) and the log in double),
// a warp per row for vocabularies up to kWarpVocab (a block of 256 threads on a 3-symbol row left
// 253 idle) and a block per row above. The targets are checked on the host (the same errors as the
// CPU op; they are a few ids per row) and uploaded as i64. The per-row losses are summed on the
// device by one block in a fixed order (deterministic), so the loss comes back as one double; the
// training entry (cross_entropy_train) does not read it back at all.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/cross_entropy/cross_entropy.h"

namespace mamba::ops {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kWarpVocab = 1024;
constexpr int kFinishThreads = 1024;

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
                                     int64_t vocab, double inv_n, const double* __restrict__ counts,
                                     double* __restrict__ row_loss, float* __restrict__ dlogits) {
  __shared__ float fscratch[32];
  if (counts) inv_n = counts[1];
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

// A warp per row, same results as cross_entropy_kernel; also (when row_hit) 1 where the row's first
// maximal logit is its target (the trainer's accuracy), 0 otherwise.
__global__ void cross_entropy_warp_kernel(const float* __restrict__ logits,
                                          const int64_t* __restrict__ targets, int64_t rows, int64_t vocab,
                                          double inv_n, const double* __restrict__ counts,
                                          double* __restrict__ row_loss, double* __restrict__ row_hit,
                                          float* __restrict__ dlogits) {
  if (counts) inv_n = counts[1];
  const int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // uniform over the warp
  const int64_t t = targets[r];
  const float* x = logits + r * vocab;
  float* g = dlogits ? dlogits + r * vocab : nullptr;
  if (t < 0) {
    if (lane == 0 && row_loss) row_loss[r] = 0.0;
    if (lane == 0 && row_hit) row_hit[r] = 0.0;
    if (g)
      for (int64_t i = lane; i < vocab; i += 32) g[i] = 0.0f;
    return;
  }
  float mx = -INFINITY, best_v = -INFINITY;
  int64_t best = -1;  // this lane's first maximum
  for (int64_t i = lane; i < vocab; i += 32) {
    const float v = x[i];
    mx = fmaxf(mx, v);
    if (best < 0 || v > best_v) best_v = v, best = i;
  }
  mx = mamba::cuda::warp_max(mx);
  double sum = 0.0;
  for (int64_t i = lane; i < vocab; i += 32) sum += exp(static_cast<double>(x[i]) - mx);
  const double lse = log(warp_sum_d(sum));
  if (row_hit) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best_v, off);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, best, off);
      if (oi >= 0 && (best < 0 || ov > best_v || (ov == best_v && oi < best))) best_v = ov, best = oi;
    }
    if (lane == 0) row_hit[r] = best == t ? 1.0 : 0.0;
  }
  if (lane == 0 && row_loss) row_loss[r] = lse + mx - x[t];
  if (!g) return;
  for (int64_t i = lane; i < vocab; i += 32) {
    float gi = static_cast<float>(exp(static_cast<double>(x[i]) - mx - lse) * inv_n);
    if (i == t) gi -= static_cast<float>(inv_n);
    g[i] = gi;
  }
}

// One block: stats[0] = Σ row_loss / n_counted (0 when none), stats[1] = Σ row_hit (when given),
// each thread summing a fixed stride of rows, then a fixed tree.
__global__ void cross_entropy_finish_kernel(const double* __restrict__ row_loss,
                                            const double* __restrict__ row_hit, int64_t rows,
                                            double n_counted, const double* __restrict__ counts,
                                            double* __restrict__ stats) {
  __shared__ double scratch[32];
  if (counts) n_counted = counts[0];
  double loss = 0.0, hits = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    loss += row_loss[r];
    if (row_hit) hits += row_hit[r];
  }
  loss = block_sum_d(loss, scratch);
  hits = block_sum_d(hits, scratch);
  if (threadIdx.x == 0) {
    stats[0] = n_counted > 0 ? loss / n_counted : 0.0;
    stats[1] = hits;
  }
}

// Per-row losses (and hits, gradient) by the warp kernel or, for large vocabularies without hits,
// the block kernel.
// counts (device, may be null): {n_counted, 1 / n_counted} as doubles, replacing inv_n.
void launch_rows(const Tensor& logits, const Tensor& tgt, int64_t rows, int64_t vocab, double inv_n,
                 const double* counts, double* row_loss, double* row_hit, float* dlogits) {
  cudaStream_t stream = mamba::cuda::stream();
  if (vocab <= kWarpVocab || row_hit) {
    constexpr int kRowsPerBlock = kThreads / 32;
    cross_entropy_warp_kernel<<<mamba::cuda::ceil_div(rows, kRowsPerBlock), kThreads, 0, stream>>>(
        logits.f32(), tgt.data<int64_t>(), rows, vocab, inv_n, counts, row_loss, row_hit, dlogits);
  } else {
    cross_entropy_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, stream>>>(
        logits.f32(), tgt.data<int64_t>(), vocab, inv_n, counts, row_loss, dlogits);
  }
  CUDA_CHECK_LAUNCH();
}

// Targets checked on the host as the CPU op does, uploaded as contiguous i64.
Tensor upload_targets(const Tensor& logits, const Tensor& targets_in, int64_t& n_counted) {
  const std::vector<int64_t> targets = cross_entropy_targets(logits, targets_in, n_counted);
  Tensor host = Tensor::empty({static_cast<int64_t>(targets.size())}, DType::i64);
  std::copy(targets.begin(), targets.end(), host.data<int64_t>());
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
  Tensor stats = Tensor::empty({2}, DType::i64, Device::cuda);
  launch_rows(logits, tgt, rows, vocab, 0.0, nullptr, static_cast<double*>(row_loss.raw()), nullptr, nullptr);
  cross_entropy_finish_kernel<<<1, kFinishThreads, 0, mamba::cuda::stream()>>>(
      static_cast<const double*>(row_loss.raw()), nullptr, rows, static_cast<double>(n_counted), nullptr,
      static_cast<double*>(stats.raw()));
  CUDA_CHECK_LAUNCH();
  const Tensor host = stats.to(Device::cpu);  // synchronizes
  return static_cast<const double*>(host.raw())[0];
}

Tensor cross_entropy_bwd_cuda(const Tensor& logits_in, const Tensor& targets) {
  const Tensor logits = checked_logits(logits_in);
  int64_t n_counted = 0;
  const Tensor tgt = upload_targets(logits, targets, n_counted);
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  Tensor dlogits = Tensor::empty(logits.shape(), DType::f32, Device::cuda);
  if (rows == 0 || vocab == 0) return dlogits;
  const double inv_n = n_counted > 0 ? 1.0 / static_cast<double>(n_counted) : 0.0;
  launch_rows(logits, tgt, rows, vocab, inv_n, nullptr, nullptr, nullptr, dlogits.f32());
  return dlogits;
}

namespace {

// The training entry's kernels: targets on the device; counts either given there (counts_dev) or
// n_counted from the host.
Tensor train_rows(const Tensor& logits, const Tensor& tgt, int64_t n_counted, const double* counts_dev,
                  Tensor& dlogits) {
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  dlogits = Tensor::empty(logits.shape(), DType::f32, Device::cuda);
  Tensor stats = Tensor::zeros({2}, DType::i64, Device::cuda);  // all-zero bits: 0.0, 0.0
  if (rows == 0 || vocab == 0) return stats;
  const double inv_n = n_counted > 0 ? 1.0 / static_cast<double>(n_counted) : 0.0;
  Tensor row_loss = Tensor::empty({rows}, DType::i64, Device::cuda),
         row_hit = Tensor::empty({rows}, DType::i64, Device::cuda);
  launch_rows(logits, tgt, rows, vocab, inv_n, counts_dev, static_cast<double*>(row_loss.raw()),
              static_cast<double*>(row_hit.raw()), dlogits.f32());
  cross_entropy_finish_kernel<<<1, kFinishThreads, 0, mamba::cuda::stream()>>>(
      static_cast<const double*>(row_loss.raw()), static_cast<const double*>(row_hit.raw()), rows,
      static_cast<double>(n_counted), counts_dev, static_cast<double*>(stats.raw()));
  CUDA_CHECK_LAUNCH();
  return stats;
}

}  // namespace

Tensor cross_entropy_train_cuda(const Tensor& logits_in, const Tensor& targets, Tensor& dlogits) {
  const Tensor logits = checked_logits(logits_in);
  int64_t n_counted = 0;
  const Tensor tgt = upload_targets(logits, targets, n_counted);
  return train_rows(logits, tgt, n_counted, nullptr, dlogits);
}

Tensor cross_entropy_train_device_cuda(const Tensor& logits_in, const Tensor& targets, const Tensor& counts,
                                       Tensor& dlogits) {
  const Tensor logits = checked_logits(logits_in);
  mamba::cuda::check_cuda_tensor(targets, "cross_entropy targets");
  mamba::cuda::check_cuda_tensor(counts, "cross_entropy counts");
  MAMBA_CHECK(targets.dtype() == DType::i64 && targets.is_contiguous() &&
                  targets.numel() * logits.size(-1) == logits.numel(),
              "cross_entropy_train_device: targets "
                  << shape_str(targets.shape()) << " must be contiguous i64, "
                  << "one per row of logits " << shape_str(logits.shape()));
  MAMBA_CHECK(counts.dtype() == DType::i64 && counts.numel() == 2, "cross_entropy_train_device: counts");
  return train_rows(logits, targets, 1, static_cast<const double*>(counts.raw()), dlogits);
}

}  // namespace mamba::ops
