// Elementwise ops on CUDA vs the CPU ops, with column-view (row-strided) inputs where the models
// pass them, ids on the host and on the device, and the out-of-vocabulary error. Label `cuda`.
#include <gtest/gtest.h>

#include <tuple>
#include <utility>
#include <vector>

#include "core/error.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/elementwise/elementwise.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(ElementwiseCuda, AddSwigluMulSilu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [batch, seq_len, n] : {std::tuple{1, 1, 5}, {2, 7, 33}, {3, 129, 64}}) {
    Tensor a = testing::random_tensor({batch, seq_len, n}, rng),
           b = testing::random_tensor({batch, seq_len, n}, rng);
    Tensor ga = on_cuda(a);
    add_(exec, ga, on_cuda(b));
    add_(exec, a, b);
    EXPECT_LT(scaled_max_diff(ga, a), 1e-6f);
    // swiglu and mul_silu_ read column views of a wider projection.
    const Tensor wide = testing::random_tensor({batch, seq_len, 2 * n + 3}, rng, -4.0f, 4.0f);
    const Tensor h = wide.slice(-1, 3, 2 * n + 3), gh = on_cuda(wide).slice(-1, 3, 2 * n + 3);
    for (bool gate_first : {false, true})
      EXPECT_LT(scaled_max_diff(swiglu(exec, gh, gate_first), swiglu(exec, h, gate_first)), 1e-6f);
    Tensor y = testing::random_tensor({batch, seq_len, n}, rng), gy = on_cuda(y);
    mul_silu_(exec, gy, gh.slice(-1, 0, n));
    mul_silu_(exec, y, h.slice(-1, 0, n));
    EXPECT_LT(scaled_max_diff(gy, y), 1e-6f);
  }
}

constexpr GateAct kActs[] = {GateAct::silu, GateAct::gelu, GateAct::gelu_tanh, GateAct::relu2};

// gated_act (every activation, both orders) and activation on column views of a wider projection,
// a view with non-nesting leading strides (transposed) and a 4-D one; scale_.
TEST(ElementwiseCuda, GatedActActivationScale) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  for (auto [batch, seq_len, n] : {std::tuple{1, 1, 5}, {2, 7, 33}, {3, 129, 64}, {1, 2, 5000}}) {
    const Tensor wide = testing::random_tensor({batch, seq_len, 2 * n + 3}, rng, -6.0f, 6.0f),
                 gwide = on_cuda(wide);
    const std::vector<std::pair<Tensor, Tensor>> inputs = {
        {wide.slice(-1, 3, 2 * n + 3), gwide.slice(-1, 3, 2 * n + 3)},
        {wide.slice(-1, 1, 2 * n + 1).transpose(0, 1), gwide.slice(-1, 1, 2 * n + 1).transpose(0, 1)},
        {wide.view({batch, seq_len, 1, 2 * n + 3}).slice(-1, 0, 2 * n),
         gwide.view({batch, seq_len, 1, 2 * n + 3}).slice(-1, 0, 2 * n)}};
    for (const auto& [h, gh] : inputs) {
      for (GateAct act : kActs) {
        for (bool gate_first : {false, true}) {
          const Tensor g = gated_act(exec, gh, act, gate_first);
          EXPECT_EQ(g.device(), Device::cuda);
          EXPECT_LT(scaled_max_diff(g, gated_act(exec, h, act, gate_first)), 1e-6f)
              << int(act) << " " << gate_first << " " << shape_str(h.shape());
        }
        EXPECT_LT(scaled_max_diff(activation(exec, gh, act), activation(exec, h, act)), 1e-6f)
            << int(act) << " " << shape_str(h.shape());
      }
      for (bool gate_first : {false, true})  // GateAct::silu is swiglu, bit for bit
        EXPECT_EQ(gated_act(exec, gh, GateAct::silu, gate_first).to_vector(),
                  swiglu(exec, gh, gate_first).to_vector());
    }
    Tensor x = testing::random_tensor({batch, seq_len, n}, rng), gx = on_cuda(x);
    scale_(exec, gx, -0.37f);
    scale_(exec, x, -0.37f);
    EXPECT_EQ(scaled_max_diff(gx, x), 0.0f);
  }
  Tensor empty = on_cuda(Tensor::zeros({0, 4}));
  scale_(exec, empty, 2.0f);
  EXPECT_EQ(gated_act(exec, empty, GateAct::gelu, true).shape(), (Shape{0, 2}));
  EXPECT_EQ(activation(exec, empty, GateAct::relu2).shape(), (Shape{0, 4}));
}

TEST(ElementwiseCuda, SoftplusConcatEmbedding) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  const Tensor wide = testing::random_tensor({2, 9, 40}, rng, -30.0f, 30.0f);  // both softplus branches
  const Tensor bias = testing::random_tensor({8}, rng);
  for (auto [lo, hi] : {std::pair{0.0f, INFINITY}, {0.01f, 0.5f}})
    EXPECT_LT(
        scaled_max_diff(softplus_bias_clamp(exec, on_cuda(wide).slice(-1, 30, 38), on_cuda(bias), lo, hi),
                        softplus_bias_clamp(exec, wide.slice(-1, 30, 38), bias, lo, hi)),
        1e-6f);
  EXPECT_LT(scaled_max_diff(concat_last(exec, on_cuda(wide).slice(-1, 0, 7), on_cuda(wide).slice(-1, 20, 40)),
                            concat_last(exec, wide.slice(-1, 0, 7), wide.slice(-1, 20, 40))),
            0.0f + 1e-7f);

  const Tensor table = testing::random_tensor({50, 12}, rng);
  Tensor ids = Tensor::empty({2, 5}, DType::i64);
  for (int64_t i = 0; i < 10; ++i) ids.data<int64_t>()[i] = (i * 17) % 50;
  const Tensor ref = embedding(exec, ids, table);
  EXPECT_LT(scaled_max_diff(embedding(exec, ids, on_cuda(table)), ref), 1e-7f);           // ids on the host
  EXPECT_LT(scaled_max_diff(embedding(exec, on_cuda(ids), on_cuda(table)), ref), 1e-7f);  // ids on the device
  const Tensor ids32 = ids.to(DType::i32);
  EXPECT_LT(scaled_max_diff(embedding(exec, ids32, on_cuda(table)), ref), 1e-7f);
  ids.data<int64_t>()[7] = 50;
  EXPECT_THROW(embedding(exec, ids, on_cuda(table)), Error);
}

// neg_exp (A = −exp(A_log), refreshed on the device after each optimizer step) vs the CPU.
TEST(ElementwiseCuda, NegExp) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(7);
  const Tensor x = testing::random_tensor({33, 17}, rng, -9.0f, 4.0f);
  const Tensor g = neg_exp(exec, on_cuda(x));
  EXPECT_EQ(g.device(), Device::cuda);
  EXPECT_LT(scaled_max_diff(g, neg_exp(exec, x)), 1e-6f);
  EXPECT_EQ(neg_exp(exec, on_cuda(Tensor::zeros({0}))).numel(), 0);
}

}  // namespace
}  // namespace mamba::ops
