// Two-stage deterministic column sums (see reduce.h). Stage 1: a block per (32-column tile, row
// chunk), row lanes accumulate in double and reduce in a fixed tree into one partial per (chunk,
// column). Stage 2: a warp per column sums its chunks (lane-strided, then a fixed shuffle tree)
// and adds the float result to the destination.
#include <algorithm>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/reduce.h"
#include "core/error.h"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kTargetBlocks = 1024;  // enough blocks for every SM of an H100 several times over

// blockDim = (cols, kThreads / cols), cols a power of two ≤ 32: few columns get more row lanes.
__global__ void column_partials_kernel(const float* __restrict__ src, int64_t items, int64_t stride,
                                       int64_t n, int64_t rows_per_chunk, double* __restrict__ partial) {
  __shared__ double part[kThreads];
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t begin = blockIdx.y * rows_per_chunk;
  const int64_t end = begin + rows_per_chunk < items ? begin + rows_per_chunk : items;
  double acc = 0.0;
  if (c < n)
    for (int64_t it = begin + threadIdx.y; it < end; it += blockDim.y) acc += src[it * stride + c];
  const int lane = threadIdx.y * blockDim.x + threadIdx.x;
  part[lane] = acc;
  __syncthreads();
  for (unsigned int s = blockDim.y / 2; s > 0; s >>= 1) {
    if (threadIdx.y < s) part[lane] += part[lane + s * blockDim.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && c < n) partial[blockIdx.y * n + c] = part[threadIdx.x];
}

__global__ void column_finish_kernel(const double* __restrict__ partial, int64_t chunks, int64_t n,
                                     float* __restrict__ dst) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (c >= n) return;  // uniform over the warp
  double acc = 0.0;
  for (int64_t k = lane; k < chunks; k += 32) acc += partial[k * n + c];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) dst[c] += static_cast<float>(acc);
}

}  // namespace

RowChunks row_chunks(int64_t items, int64_t col_blocks, int64_t min_rows) {
  const int64_t by_size = (items + min_rows - 1) / std::max<int64_t>(min_rows, 1);
  const int64_t by_grid = std::max<int64_t>(1, kTargetBlocks / std::max<int64_t>(col_blocks, 1));
  int64_t chunks = std::clamp<int64_t>(std::min(by_size, by_grid), 1, 65535);
  const int64_t per = (items + chunks - 1) / chunks;
  chunks = per > 0 ? (items + per - 1) / per : 1;
  return {std::max<int64_t>(per, 1), std::max<int64_t>(chunks, 1)};
}

void column_sum_add(const float* src, int64_t items, int64_t stride, int64_t n, float* dst,
                    cudaStream_t stream) {
  if (n == 0 || items == 0) return;
  unsigned int cols = 32;
  while (cols > 1 && static_cast<int64_t>(cols / 2) >= n) cols /= 2;
  const unsigned int lanes = kThreads / cols;
  const int64_t col_blocks = (n + cols - 1) / cols;
  const RowChunks rc = row_chunks(items, col_blocks, 4 * static_cast<int64_t>(lanes));
  MAMBA_CHECK(col_blocks <= 0x7fffffff, "column_sum_add: " << n << " columns");
  const Tensor partial = Tensor::empty({rc.chunks * n}, DType::i64, Device::cuda);  // doubles
  double* part = static_cast<double*>(partial.raw());
  column_partials_kernel<<<dim3(static_cast<unsigned int>(col_blocks), static_cast<unsigned int>(rc.chunks)),
                           dim3(cols, lanes), 0, stream>>>(src, items, stride, n, rc.rows_per_chunk, part);
  CUDA_CHECK_LAUNCH();
  constexpr int kWarps = kThreads / 32;
  column_finish_kernel<<<ceil_div(n, kWarps), kThreads, 0, stream>>>(part, rc.chunks, n, dst);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mamba::cuda
