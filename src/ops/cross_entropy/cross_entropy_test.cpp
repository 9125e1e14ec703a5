// Cross-entropy: the mean against a naive double evaluation with ignored rows, its gradient by
// finite differences, and the error for a target outside the vocabulary.
#include "ops/cross_entropy/cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "exec_testing.h"
#include "grad_check.h"
#include "testing.h"

namespace mamba::ops {
namespace {

Tensor make_targets(std::initializer_list<int64_t> values, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::i64);
  int64_t i = 0;
  for (int64_t v : values) t.data<int64_t>()[i++] = v;
  return t;
}

TEST(CrossEntropy, MeanOverCountedRows) {
  std::mt19937 rng(1);
  Tensor logits = testing::random_tensor({2, 3, 7}, rng, -4, 4);
  const Tensor targets = make_targets({3, 0, -1, 6, -1, 2}, {2, 3});
  double total = 0;
  int counted = 0;
  for (int64_t r = 0; r < 6; ++r) {
    const int64_t t = targets.data<int64_t>()[r];
    if (t < 0) continue;
    double sum = 0;
    for (int64_t i = 0; i < 7; ++i) sum += std::exp(double(logits.f32()[r * 7 + i]));
    total += std::log(sum) - logits.f32()[r * 7 + t];
    ++counted;
  }
  EXPECT_NEAR(cross_entropy_fwd(exec, logits, targets), total / counted, 1e-6);
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
  std::mt19937 rng(2);
  Tensor logits = testing::random_tensor({2, 3, 7}, rng, -4, 4);
  const Tensor targets = make_targets({3, 0, -1, 6, -1, 2}, {2, 3});
  const Tensor dlogits = cross_entropy_bwd(exec, logits, targets);
  for (int64_t i = 14; i < 21; ++i) EXPECT_EQ(dlogits.f32()[i], 0.0f) << "ignored row";
  testing::expect_grads_match([&] { return cross_entropy_fwd(exec, logits, targets); },
                              {{"logits", logits, dlogits}}, 1e-3f, 1e-2f, 42);
}

TEST(CrossEntropy, TargetOutsideVocabularyThrows) {
  Tensor logits = Tensor::zeros({2, 4});
  EXPECT_THROW(cross_entropy_fwd(exec, logits, make_targets({1, 4}, {2})), Error);
}

TEST(CrossEntropy, TrainGivesLossGradientAndCorrectCount) {
  std::mt19937 rng(3);
  Tensor logits = testing::random_tensor({2, 3, 7}, rng, -4, 4);
  const Tensor targets = make_targets({3, 0, -1, 6, -1, 2}, {2, 3});
  logits.f32()[0 * 7 + 3] = 9.0f;  // row 0: the target is the maximum
  logits.f32()[1 * 7 + 5] = 9.0f;  // row 1: another column is
  logits.f32()[3 * 7 + 6] = 9.0f;
  logits.f32()[3 * 7 + 1] = 9.0f;  // row 3: a tie, won by the first (1), not the target (6)
  logits.f32()[5 * 7 + 2] = 9.0f;
  Tensor dlogits;
  const Tensor stats = cross_entropy_train(exec, logits, targets, dlogits);
  ASSERT_EQ(stats.numel(), 2);
  const double* v = static_cast<const double*>(stats.raw());
  EXPECT_EQ(v[0], cross_entropy_fwd(exec, logits, targets));
  EXPECT_EQ(v[1], 2.0);  // rows 0 and 5
  const Tensor ref = cross_entropy_bwd(exec, logits, targets);
  for (int64_t i = 0; i < ref.numel(); ++i) EXPECT_EQ(dlogits.f32()[i], ref.f32()[i]) << i;
}

}  // namespace
}  // namespace mamba::ops
