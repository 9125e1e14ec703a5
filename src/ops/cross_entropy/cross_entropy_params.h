// The cross-entropy's packed sizes, built once by its fronts (cross_entropy.cpp) after the targets
// were checked, and the CPU kernels they dispatch to (cross_entropy_cpu.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mamba::ops {

// logits seen as [rows, vocab]; n_counted rows have a target ≥ 0 and take part in the mean.
struct CrossEntropyParams {
  int64_t rows, vocab, n_counted;
};

namespace cpu {

// logits contiguous f32; targets: one per row, < vocab (negative: not counted).
double cross_entropy_fwd(const CrossEntropyParams& p, const Tensor& logits, const std::vector<int64_t>& tgt);
Tensor cross_entropy_bwd(const CrossEntropyParams& p, const Tensor& logits, const std::vector<int64_t>& tgt);
// Counted rows whose first maximal logit is the target.
double cross_entropy_n_correct(const CrossEntropyParams& p, const Tensor& logits,
                               const std::vector<int64_t>& tgt);

}  // namespace cpu

}  // namespace mamba::ops
