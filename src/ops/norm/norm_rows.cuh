// The gated RMSNorm's short-row kernels (norm_cuda.cu, norm_bwd_cuda.cu): a warp per (row, group)
// of at most kShortRow channels, lane l holding channels l + 32·k. Their sums reproduce the order of
// mamba::cuda::block_sum in the one-block-per-group kernels (256 threads, one channel each), so
// that which kernel runs does not change a bit of the result.
#pragma once
#include <cstdint>

#include "backend/cuda/kernel_utils.cuh"

namespace mamba::ops {

constexpr int kRowWarps = 8;                // (row, group) items per block
constexpr int kRowChunks = 8;               // channels per lane, at most
constexpr int kShortRow = 32 * kRowChunks;  // = the block kernels' 256 threads

// This warp's (row, group) item of a [rows, n] tensor in groups of group_size channels: its
// first channel and weight offset, the lane and the number of 32-channel chunks in the group.
struct RowItem {
  int64_t item, off, w_off;
  int lane, chunks;
};

__device__ __forceinline__ RowItem row_item(int64_t n, int64_t group_size) {
  const int64_t item = blockIdx.x * int64_t(kRowWarps) + (threadIdx.x >> 5);
  return {item, item * group_size, (item % (n / group_size)) * group_size, static_cast<int>(threadIdx.x & 31),
          static_cast<int>((group_size + 31) / 32)};
}

// Blocks of kRowWarps items for n_items (row, group) items.
inline unsigned int row_blocks(int64_t n_items) {
  return static_cast<unsigned int>((n_items + kRowWarps - 1) / kRowWarps);
}

// Σ over the group of the values v[k] of lane l (channel l + 32·k; 0 past the group), every lane
// getting the result. block_sum over 256 threads reduces each warp (chunk k) by the butterfly of
// warp_sum, then its 8 warp sums s_k by the same butterfly over lanes 0..7 (the rest 0, exact):
// ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)). Chunks at or past `chunks` are all 0.
__device__ __forceinline__ float row_sum(const float (&v)[kRowChunks], int chunks) {
  float s[kRowChunks];
#pragma unroll
  for (int k = 0; k < kRowChunks; ++k) s[k] = k < chunks ? mamba::cuda::warp_sum(v[k]) : 0.0f;
  static_assert(kRowChunks == 8);
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

}  // namespace mamba::ops
