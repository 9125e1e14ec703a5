// Language-model loss: mean cross-entropy of logits against target ids over every vocabulary
// column (padding included, as the fixtures define it), and its gradient.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// logits: [..., vocab] f32; targets: [...] i64 or i32, a negative target marks a row that is not
// counted. Returns the mean over counted rows of logsumexp(row) − row[target] (0 when none).
// Throws Error(out_of_range) for a target ≥ vocab.
double cross_entropy_fwd(Exec& exec, const Tensor& logits, const Tensor& targets);

// d mean / d logits: (softmax(row) − onehot(target)) / n_counted on counted rows, 0 elsewhere.
Tensor cross_entropy_bwd(Exec& exec, const Tensor& logits, const Tensor& targets);

// The training step's loss, gradient and accuracy in one pass, without reading anything back to
// the host: sets dlogits as cross_entropy_bwd and returns a 2-element i64 tensor on the logits'
// device whose 8-byte slots hold doubles: {the loss of cross_entropy_fwd, the number of counted
// rows whose first maximal logit is the target}. The caller reads it when it needs the numbers.
Tensor cross_entropy_train(Exec& exec, const Tensor& logits, const Tensor& targets, Tensor& dlogits);

// cross_entropy_train for a step recorded in a CUDA graph: nothing is read from or copied to the
// host. targets: i64 on the logits' device, already checked by the caller (cross_entropy_targets);
// counts: 2 eight-byte slots there holding the doubles {n_counted, 1 / n_counted} (0 and 0 when
// none), rewritten between replays. Same results as cross_entropy_train.
Tensor cross_entropy_train_device(Exec& exec, const Tensor& logits, const Tensor& targets,
                                  const Tensor& counts, Tensor& dlogits);

// The targets (any device) as i64 on the host, checked against the logits' rows and vocabulary
// (Error(out_of_range) naming the row); n_counted = the rows that take part in the mean.
std::vector<int64_t> cross_entropy_targets(const Tensor& logits, const Tensor& targets, int64_t& n_counted);

}  // namespace mamba::ops
