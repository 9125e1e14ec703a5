// CPU helpers of the elementwise ops: rows of a tensor read in place, and the element block that
// the parallel loops split rows into.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace mamba::ops {

// Elements per parallel task along a row (a decode step's one long row still spreads over threads).
inline constexpr int64_t kCpuColBlock = 4096;

// t viewed as [rows, n = t.size(-1)] with a contiguous last dim and leading dims of any strides
// (column views of a wider projection are read in place); other layouts are copied once.
class RowReader {
public:
  RowReader(const Tensor& t, const char* what) {
    MAMBA_CHECK(t.dtype() == DType::f32, what << ": expected f32, got " << dtype_name(t.dtype()));
    MAMBA_CHECK(t.dim() >= 1, what << ": expected at least one dimension");
    keep_ = t.stride(-1) == 1 ? t : t.contiguous();
    n_ = keep_.size(-1);
    rows_ = n_ == 0 ? 0 : keep_.numel() / n_;
    // Leading dims innermost first, size-1 dims dropped; collapse to one row stride when they nest.
    for (int64_t d = keep_.dim() - 2; d >= 0; --d)
      if (keep_.size(d) != 1) lead_.emplace_back(keep_.size(d), keep_.stride(d));
    uniform_ = true;
    int64_t expect = lead_.empty() ? n_ : lead_[0].second;
    row_stride_ = expect;
    for (const auto& [size, stride] : lead_) {
      if (stride != expect) uniform_ = false;
      expect = stride * size;
    }
  }
  int64_t n() const { return n_; }
  int64_t rows() const { return rows_; }
  const float* row(int64_t r) const {
    const float* p = keep_.f32();
    if (uniform_) return p + r * row_stride_;
    for (const auto& [size, stride] : lead_) {
      p += (r % size) * stride;
      r /= size;
    }
    return p;
  }

private:
  Tensor keep_;
  int64_t n_ = 0, rows_ = 0, row_stride_ = 0;
  bool uniform_ = true;
  std::vector<std::pair<int64_t, int64_t>> lead_;  // (size, stride), innermost first
};

// Runs fn(r, c0, c1) over rows × blocks of kCpuColBlock columns of [rows, n], in parallel.
template <typename Fn>
void parallel_row_blocks(int64_t rows, int64_t n, Fn&& fn) {
  if (rows == 0 || n == 0) return;
  const int64_t col_blocks = (n + kCpuColBlock - 1) / kCpuColBlock;
  parallel_for(rows * col_blocks, [&](int64_t t) {
    const int64_t r = t / col_blocks, c0 = (t % col_blocks) * kCpuColBlock;
    fn(r, c0, c0 + kCpuColBlock < n ? c0 + kCpuColBlock : n);
  });
}

}  // namespace mamba::ops
