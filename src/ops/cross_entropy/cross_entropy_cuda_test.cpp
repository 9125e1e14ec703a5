// Cross-entropy on CUDA vs the CPU op: loss and gradient on random logits of odd shapes (rows
// ignored, i32 and i64 targets on the host and on the device, vocabularies smaller and larger
// than a block, large logits), the training entry (20480 rows of 3 symbols), the all-ignored case
// and the out-of-vocabulary error. Label `cuda`.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

Tensor random_targets(int64_t rows, int64_t vocab, std::mt19937& rng) {
  Tensor t = Tensor::empty({rows}, DType::i64);
  std::uniform_int_distribution<int64_t> id(0, vocab - 1);
  for (int64_t r = 0; r < rows; ++r) t.data<int64_t>()[r] = r % 3 == 1 ? -1 : id(rng);  // every 3rd ignored
  return t;
}

TEST(CrossEntropyCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  for (auto [batch, seq_len, vocab, scale] : {std::tuple{1, 1, 1, 1.0f},
                                              {2, 3, 7, 4.0f},
                                              {3, 17, 255, 8.0f},
                                              {2, 33, 1000, 30.0f},
                                              {1, 5, 50280, 10.0f}}) {
    const Tensor logits = testing::random_tensor({batch, seq_len, vocab}, rng, -scale, scale);
    const Tensor targets = random_targets(batch * seq_len, vocab, rng).view({batch, seq_len});
    const double ref = cross_entropy_fwd(exec, logits, targets);
    const Tensor dref = cross_entropy_bwd(exec, logits, targets);
    const Tensor glogits = on_cuda(logits);
    for (const Tensor& tg :
         {targets, on_cuda(targets), targets.to(DType::i32), on_cuda(targets.to(DType::i32))}) {
      const double loss = cross_entropy_fwd(exec, glogits, tg);
      EXPECT_NEAR(loss, ref, 1e-9 * std::max(1.0, std::fabs(ref))) << vocab;
      const Tensor d = cross_entropy_bwd(exec, glogits, tg);
      ASSERT_EQ(d.device(), Device::cuda);
      // Gradients are O(1/n_counted): compare relative to the largest reference entry.
      const std::vector<float> g = d.to_vector(), c = dref.to_vector();
      float diff = 0.0f, mx = 0.0f;
      for (size_t i = 0; i < g.size(); ++i) {
        diff = std::max(diff, std::fabs(g[i] - c[i]));
        mx = std::max(mx, std::fabs(c[i]));
      }
      EXPECT_LE(diff, 1e-6f * std::max(mx, 1e-30f)) << vocab;
    }
  }
}

double slot(const Tensor& stats, int64_t i) {
  const Tensor host = stats.to(Device::cpu);
  return static_cast<const double*>(host.raw())[i];
}

// The training entry (loss, gradient and correct count left on the device) vs the CPU, from the
// state-tracking shape (20480 rows of 3 symbols) to a vocabulary above the warp-per-row limit.
TEST(CrossEntropyCuda, TrainMatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(5);
  for (auto [rows, vocab, scale] : {std::tuple{int64_t(20480), int64_t(3), 3.0f},
                                    {int64_t(50), int64_t(7), 4.0f},
                                    {int64_t(300), int64_t(1500), 10.0f},
                                    {int64_t(1), int64_t(1), 1.0f}}) {
    const Tensor logits = testing::random_tensor({rows, vocab}, rng, -scale, scale);
    const Tensor targets = random_targets(rows, vocab, rng);
    Tensor dref, d;
    const Tensor ref = cross_entropy_train(exec, logits, targets, dref);
    const Tensor got = cross_entropy_train(exec, on_cuda(logits), targets, d);
    ASSERT_EQ(got.device(), Device::cuda);
    ASSERT_EQ(d.device(), Device::cuda);
    EXPECT_NEAR(slot(ref, 0), cross_entropy_fwd(exec, logits, targets), 1e-12) << vocab;
    EXPECT_NEAR(slot(got, 0), slot(ref, 0), 1e-9 * std::max(1.0, std::fabs(slot(ref, 0)))) << vocab;
    EXPECT_EQ(slot(got, 1), slot(ref, 1)) << vocab;  // exact: the same argmax per row
    EXPECT_NEAR(cross_entropy_fwd(exec, on_cuda(logits), targets), slot(ref, 0),
                1e-9 * std::max(1.0, slot(ref, 0)));
    const std::vector<float> g = d.to_vector(), c = dref.to_vector();
    float diff = 0.0f, mx = 0.0f;
    for (size_t i = 0; i < g.size(); ++i) {
      diff = std::max(diff, std::fabs(g[i] - c[i]));
      mx = std::max(mx, std::fabs(c[i]));
    }
    EXPECT_LE(diff, 1e-6f * std::max(mx, 1e-30f)) << vocab;
  }
}

TEST(CrossEntropyCuda, StridedLogitsAndAllIgnored) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  const Tensor wide = testing::random_tensor({2, 5, 40}, rng, -3, 3);
  const Tensor logits = wide.slice(-1, 3, 34);  // a column view: made contiguous inside
  const Tensor targets = random_targets(10, 31, rng).view({2, 5});
  EXPECT_NEAR(cross_entropy_fwd(exec, on_cuda(wide).slice(-1, 3, 34), targets),
              cross_entropy_fwd(exec, logits, targets), 1e-9);
  EXPECT_LT(scaled_max_diff(cross_entropy_bwd(exec, on_cuda(wide).slice(-1, 3, 34), targets),
                            cross_entropy_bwd(exec, logits.contiguous(), targets)),
            1e-7f);
  Tensor none = Tensor::empty({2, 5}, DType::i64);
  for (int64_t i = 0; i < 10; ++i) none.data<int64_t>()[i] = -1;
  EXPECT_EQ(cross_entropy_fwd(exec, on_cuda(logits.contiguous()), none), 0.0);
  const std::vector<float> d = cross_entropy_bwd(exec, on_cuda(logits.contiguous()), none).to_vector();
  for (float v : d) EXPECT_EQ(v, 0.0f);
}

TEST(CrossEntropyCuda, TargetOutsideVocabularyThrows) {
  MAMBA_REQUIRE_CUDA();
  const Tensor logits = on_cuda(Tensor::zeros({2, 4}));
  Tensor t = Tensor::empty({2}, DType::i64);
  t.data<int64_t>()[0] = 1;
  t.data<int64_t>()[1] = 4;
  EXPECT_THROW(cross_entropy_fwd(exec, logits, t), Error);
  EXPECT_THROW(cross_entropy_bwd(exec, logits, on_cuda(t)), Error);
}

}  // namespace
}  // namespace mamba::ops
