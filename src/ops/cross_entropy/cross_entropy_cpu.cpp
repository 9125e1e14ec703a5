// Cross-entropy on CPU: one row per work item, log-sum-exp with max subtraction, sums in double.
// The front (cross_entropy.cpp) has checked the targets before these run.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/cross_entropy/cross_entropy_params.h"

namespace mamba::ops::cpu {

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

double cross_entropy_fwd(const CrossEntropyParams& p, const Tensor& logits, const std::vector<int64_t>& tgt) {
  const int64_t vocab = p.vocab, rows = p.rows, n_counted = p.n_counted;
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

Tensor cross_entropy_bwd(const CrossEntropyParams& p, const Tensor& logits, const std::vector<int64_t>& tgt) {
  const int64_t vocab = p.vocab, rows = p.rows, n_counted = p.n_counted;
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

double cross_entropy_n_correct(const CrossEntropyParams& p, const Tensor& logits,
                               const std::vector<int64_t>& tgt) {
  const int64_t vocab = p.vocab, rows = p.rows;
  double correct = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (tgt[r] < 0) continue;
    const float* row = logits.f32() + r * vocab;
    int64_t best = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;
    correct += best == tgt[r] ? 1.0 : 0.0;
  }
  return correct;
}

}  // namespace mamba::ops::cpu
