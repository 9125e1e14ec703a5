// Language-model loss: mean cross-entropy of logits against target ids over every vocabulary
// column (padding included, as the fixtures define it), and its gradient.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

// logits: [..., vocab] f32; targets: [...] i64 or i32, a negative target marks a row that is not
// counted. Returns the mean over counted rows of logsumexp(row) − row[target] (0 when none).
// Throws Error(out_of_range) for a target ≥ vocab.
double cross_entropy_fwd(const Tensor& logits, const Tensor& targets);

// d mean / d logits: (softmax(row) − onehot(target)) / n_counted on counted rows, 0 elsewhere.
Tensor cross_entropy_bwd(const Tensor& logits, const Tensor& targets);

}  // namespace mamba::ops
