// Front of the cross-entropy: checks the targets once (cross_entropy_targets), packs the sizes
// (cross_entropy_params.h) and runs the CPU kernels (cross_entropy_cpu.cpp) or the CUDA ones
// through the kernel table.
#include "ops/cross_entropy/cross_entropy.h"

#include <vector>

#include "core/error.h"
#include "ops/cross_entropy/cross_entropy_params.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

std::vector<int64_t> cross_entropy_targets(const Tensor& logits, const Tensor& targets_in,
                                           int64_t& n_counted) {
  const Tensor targets = targets_in.to(Device::cpu).contiguous();
  MAMBA_CHECK(targets.dtype() == DType::i64 || targets.dtype() == DType::i32,
              "cross_entropy: targets must be i64 or i32, got " << dtype_name(targets.dtype()));
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  MAMBA_CHECK(targets.numel() == rows,
              "targets " << shape_str(targets.shape()) << " logits " << shape_str(logits.shape()));
  std::vector<int64_t> out(static_cast<size_t>(rows));
  n_counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    out[r] = targets.dtype() == DType::i64 ? targets.data<int64_t>()[r] : targets.data<int32_t>()[r];
    if (out[r] >= vocab)
      throw_error(ErrorCode::out_of_range, "target id ", out[r], " at row ", r,
                  " is outside the vocabulary [0, ", vocab, ")");
    if (out[r] >= 0) ++n_counted;
  }
  return out;
}

namespace {

// The CPU fronts' one check: the targets, and the sizes of logits [rows, vocab].
CrossEntropyParams check_args(const Tensor& logits, const Tensor& targets, std::vector<int64_t>& tgt) {
  int64_t n_counted = 0;
  tgt = cross_entropy_targets(logits, targets, n_counted);
  const int64_t vocab = logits.size(-1);
  return {logits.numel() / vocab, vocab, n_counted};
}

}  // namespace

double cross_entropy_fwd(Exec& exec, const Tensor& logits_in, const Tensor& targets) {
  OpScope op_scope(exec, "cross_entropy_fwd", logits_in.device());
  if (logits_in.device() == Device::cuda) return cuda_kernels().cross_entropy.fwd(logits_in, targets);
  const Tensor logits = logits_in.contiguous();
  std::vector<int64_t> tgt;
  const CrossEntropyParams p = check_args(logits, targets, tgt);
  return cpu::cross_entropy_fwd(p, logits, tgt);
}

Tensor cross_entropy_bwd(Exec& exec, const Tensor& logits_in, const Tensor& targets) {
  OpScope op_scope(exec, "cross_entropy_bwd", logits_in.device());
  if (logits_in.device() == Device::cuda) return cuda_kernels().cross_entropy.bwd(logits_in, targets);
  const Tensor logits = logits_in.contiguous();
  std::vector<int64_t> tgt;
  const CrossEntropyParams p = check_args(logits, targets, tgt);
  return cpu::cross_entropy_bwd(p, logits, tgt);
}

Tensor cross_entropy_train(Exec& exec, const Tensor& logits_in, const Tensor& targets, Tensor& dlogits) {
  OpScope op_scope(exec, "cross_entropy_train", logits_in.device());
  if (logits_in.device() == Device::cuda)
    return cuda_kernels().cross_entropy.train(logits_in, targets, dlogits);
  const Tensor logits = logits_in.contiguous();
  std::vector<int64_t> tgt;
  const CrossEntropyParams p = check_args(logits, targets, tgt);
  const double loss = cpu::cross_entropy_fwd(p, logits, tgt);
  dlogits = cpu::cross_entropy_bwd(p, logits, tgt);
  const double correct = cpu::cross_entropy_n_correct(p, logits, tgt);
  Tensor stats = Tensor::empty({2}, DType::i64);
  double* out = static_cast<double*>(stats.raw());
  out[0] = loss;
  out[1] = correct;
  return stats;
}

Tensor cross_entropy_train_device(Exec& exec, const Tensor& logits, const Tensor& targets,
                                  const Tensor& counts, Tensor& dlogits) {
  OpScope op_scope(exec, "cross_entropy_train", logits.device());
  if (logits.device() == Device::cuda)
    return cuda_kernels().cross_entropy.train_device(logits, targets, counts, dlogits);
  return cross_entropy_train(exec, logits, targets, dlogits);  // the host has the numbers anyway
}

}  // namespace mamba::ops
