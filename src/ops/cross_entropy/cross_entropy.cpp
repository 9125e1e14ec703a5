// Cross-entropy on CPU: one row per work item, log-sum-exp with max subtraction, sums in double.
// CUDA logits go to cross_entropy_cuda.cu.
#include "ops/cross_entropy/cross_entropy.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

namespace {

// max and log Σ exp(x − max) of one row.
double log_sum_exp(const float* x, int64_t n, float& mx) {
  mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - mx);
  return std::log(sum);
}

}  // namespace

std::vector<int64_t> cross_entropy_targets(const Tensor& logits, const Tensor& targets_in,
                                           int64_t& n_counted) {
  const Tensor targets = targets_in.to(Device::cpu).contiguous();
  MAMBA_CHECK(targets.dtype() == DType::i64 || targets.dtype() == DType::i32);
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

double cross_entropy_fwd(Exec& exec, const Tensor& logits_in, const Tensor& targets) {
  OpScope op_scope(exec, "cross_entropy_fwd", logits_in.device());
  if (logits_in.device() == Device::cuda) return cuda_kernels().cross_entropy.fwd(logits_in, targets);
  const Tensor logits = logits_in.contiguous();
  int64_t n_counted = 0;
  const std::vector<int64_t> tgt = cross_entropy_targets(logits, targets, n_counted);
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  parallel_for(rows, [&](int64_t r) {
    if (tgt[r] < 0) return;
    const float* x = logits.f32() + r * vocab;
    float mx;
    const double lse = log_sum_exp(x, vocab, mx);
    row_loss[r] = lse + mx - x[tgt[r]];
  });
  double total = 0;
  for (double v : row_loss) total += v;
  return n_counted > 0 ? total / static_cast<double>(n_counted) : 0.0;
}

Tensor cross_entropy_bwd(Exec& exec, const Tensor& logits_in, const Tensor& targets) {
  OpScope op_scope(exec, "cross_entropy_bwd", logits_in.device());
  if (logits_in.device() == Device::cuda) return cuda_kernels().cross_entropy.bwd(logits_in, targets);
  const Tensor logits = logits_in.contiguous();
  int64_t n_counted = 0;
  const std::vector<int64_t> tgt = cross_entropy_targets(logits, targets, n_counted);
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  Tensor dlogits = Tensor::empty(logits.shape());
  const double inv_n = n_counted > 0 ? 1.0 / static_cast<double>(n_counted) : 0.0;
  parallel_for(rows, [&](int64_t r) {
    const float* x = logits.f32() + r * vocab;
    float* g = dlogits.f32() + r * vocab;
    if (tgt[r] < 0) {
      for (int64_t i = 0; i < vocab; ++i) g[i] = 0.0f;
      return;
    }
    float mx;
    const double lse = log_sum_exp(x, vocab, mx);
    for (int64_t i = 0; i < vocab; ++i)
      g[i] = static_cast<float>(std::exp(static_cast<double>(x[i]) - mx - lse) * inv_n);
    g[tgt[r]] -= static_cast<float>(inv_n);
  });
  return dlogits;
}

Tensor cross_entropy_train(Exec& exec, const Tensor& logits_in, const Tensor& targets, Tensor& dlogits) {
  OpScope op_scope(exec, "cross_entropy_train", logits_in.device());
  if (logits_in.device() == Device::cuda)
    return cuda_kernels().cross_entropy.train(logits_in, targets, dlogits);
  const Tensor logits = logits_in.contiguous();
  const double loss = cross_entropy_fwd(exec, logits, targets);
  dlogits = cross_entropy_bwd(exec, logits, targets);
  int64_t n_counted = 0;
  const std::vector<int64_t> tgt = cross_entropy_targets(logits, targets, n_counted);
  const int64_t vocab = logits.size(-1), rows = logits.numel() / vocab;
  double correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (tgt[r] < 0) continue;
    const float* row = logits.f32() + r * vocab;
    int64_t best = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;
    correct += best == tgt[r] ? 1.0 : 0.0;
  }
  Tensor stats = Tensor::empty({2}, DType::i64);
  double* out = static_cast<double*>(stats.raw());
  out[0] = loss;
  out[1] = correct;
  return stats;
}

}  // namespace mamba::ops
