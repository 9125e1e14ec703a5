// Deterministic reductions over many rows on the device, for the backward's parameter gradients
// (a bias or norm weight summed over every token). A single thread or block looping over tens of
// thousands of tokens is latency-bound (one dependent load chain), so these split the rows into
// chunks: per-chunk partials in a workspace, then a second launch sums each column's chunks in a
// fixed order. The result depends only on the sizes, never on scheduling. Only .cu files include this.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace mamba::cuda {

// dst[e] += float(Σ_{it < items} src[it·stride + e]) for each e < n, summed in double (f32 inputs).
// Two launches on `stream`; no host sync.
void column_sum_add(const float* src, int64_t items, int64_t stride, int64_t n, float* dst,
                    cudaStream_t stream);

// Chunking of `items` rows for a two-stage reduction whose first stage runs `col_blocks` blocks per
// chunk: rows per chunk (at least min_rows) and the number of chunks, so that the whole first stage
// has roughly enough blocks to fill the device and no chunk is tiny.
struct RowChunks {
  int64_t rows_per_chunk, chunks;
};
RowChunks row_chunks(int64_t items, int64_t col_blocks, int64_t min_rows);

}  // namespace mamba::cuda
