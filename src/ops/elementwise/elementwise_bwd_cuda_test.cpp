// Elementwise backward on CUDA vs the CPU ops: swiglu (both orders, column-view h), mul_silu
// (strided y, z), softplus_bias_clamp (values on both sides of the clamp and of the softplus
// threshold, dbias accumulated into nonzero values), the embedding scatter (repeated ids, i64
// and i32, ids on the host and on the device, nonzero dtable; a 3-symbol table under 20000 tokens)
// and neg_exp. Label `cuda`.
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

TEST(ElementwiseBwdCuda, SwigluMulSilu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [batch, seq_len, n] : {std::tuple{1, 1, 5}, {2, 7, 33}, {3, 129, 64}}) {
    // h: a column view of a wider projection, as the models pass it.
    const Tensor wide = testing::random_tensor({batch, seq_len, 2 * n + 3}, rng, -6.0f, 6.0f);
    const Tensor h = wide.slice(-1, 3, 2 * n + 3), gh = on_cuda(wide).slice(-1, 3, 2 * n + 3);
    const Tensor dout = testing::random_tensor({batch, seq_len, n}, rng);
    for (bool gate_first : {false, true}) {
      const Tensor gdh = swiglu_bwd(exec, on_cuda(dout), gh, gate_first);
      EXPECT_EQ(gdh.shape(), h.shape());
      EXPECT_LT(scaled_max_diff(gdh, swiglu_bwd(exec, dout, h, gate_first)), 1e-6f) << n << " " << gate_first;
    }
    const Tensor y = wide.slice(-1, 0, n), z = wide.slice(-1, n, 2 * n);
    const Tensor gwide = on_cuda(wide);
    Tensor dy, dz, gdy, gdz;
    mul_silu_bwd(exec, on_cuda(dout), gwide.slice(-1, 0, n), gwide.slice(-1, n, 2 * n), gdy, gdz);
    mul_silu_bwd(exec, dout, y, z, dy, dz);
    EXPECT_LT(scaled_max_diff(gdy, dy), 1e-6f) << n;
    EXPECT_LT(scaled_max_diff(gdz, dz), 1e-6f) << n;
  }
}

// gated_act_bwd (every activation, both orders) and activation_bwd on column views and a
// transposed view (non-nesting leading strides), including a row of 5000.
TEST(ElementwiseBwdCuda, GatedActActivation) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(6);
  for (auto [batch, seq_len, n] : {std::tuple{1, 1, 5}, {2, 7, 33}, {3, 129, 64}, {1, 2, 5000}}) {
    const Tensor wide = testing::random_tensor({batch, seq_len, 2 * n + 3}, rng, -6.0f, 6.0f),
                 gwide = on_cuda(wide);
    const std::vector<std::pair<Tensor, Tensor>> inputs = {
        {wide.slice(-1, 3, 2 * n + 3), gwide.slice(-1, 3, 2 * n + 3)},
        {wide.slice(-1, 1, 2 * n + 1).transpose(0, 1), gwide.slice(-1, 1, 2 * n + 1).transpose(0, 1)}};
    for (const auto& [h, gh] : inputs) {
      Shape dshape = h.shape();
      dshape.back() = n;
      const Tensor dout = testing::random_tensor(dshape, rng),
                   dx_out = testing::random_tensor(h.shape(), rng);
      for (GateAct act : {GateAct::silu, GateAct::gelu, GateAct::gelu_tanh, GateAct::relu2}) {
        for (bool gate_first : {false, true}) {
          const Tensor gdh = gated_act_bwd(exec, on_cuda(dout), gh, act, gate_first);
          EXPECT_EQ(gdh.shape(), h.shape());
          EXPECT_LT(scaled_max_diff(gdh, gated_act_bwd(exec, dout, h, act, gate_first)), 1e-6f)
              << int(act) << " " << gate_first << " " << shape_str(h.shape());
        }
        EXPECT_LT(scaled_max_diff(activation_bwd(exec, on_cuda(dx_out), gh, act),
                                  activation_bwd(exec, dx_out, h, act)),
                  1e-6f)
            << int(act) << " " << shape_str(h.shape());
      }
    }
  }
}

TEST(ElementwiseBwdCuda, SoftplusBiasClamp) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (auto [batch, seq_len, n] : {std::tuple{1, 1, 3}, {2, 37, 24}, {3, 100, 65}, {256, 80, 2}}) {
    // Wide range: some values clamp at lo/hi, some pass the softplus threshold 20.
    const Tensor wide = testing::random_tensor({batch, seq_len, n + 4}, rng, -12.0f, 25.0f);
    const Tensor raw = wide.slice(-1, 4, n + 4), graw = on_cuda(wide).slice(-1, 4, n + 4);
    const Tensor bias = testing::random_tensor({n}, rng, -1.0f, 1.0f);
    const Tensor dout = testing::random_tensor({batch, seq_len, n}, rng);
    Tensor db = testing::random_tensor({n}, rng), gdb = on_cuda(db);
    const Tensor gdraw = softplus_bias_clamp_bwd(exec, on_cuda(dout), graw, on_cuda(bias), 1e-3f, 22.0f, gdb);
    const Tensor draw = softplus_bias_clamp_bwd(exec, dout, raw, bias, 1e-3f, 22.0f, db);
    EXPECT_LT(scaled_max_diff(gdraw, draw), 1e-6f) << n;
    EXPECT_LT(scaled_max_diff(gdb, db), 1e-5f) << n;
  }
}

TEST(ElementwiseBwdCuda, EmbeddingScatter) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  const int64_t vocab = 50, d = 37;
  Tensor ids = Tensor::empty({3, 67}, DType::i64);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = (i * 17) % 23;  // many repeats
  const Tensor dout = testing::random_tensor({3, 67, d}, rng);
  const Tensor start = testing::random_tensor({vocab, d}, rng);
  Tensor ref = start.copy();
  embedding_bwd(exec, ids, dout, ref);
  for (const Tensor& gids : {ids, on_cuda(ids), ids.to(DType::i32), on_cuda(ids.to(DType::i32))}) {
    Tensor gtable = on_cuda(start);
    embedding_bwd(exec, gids, on_cuda(dout), gtable);
    EXPECT_LT(scaled_max_diff(gtable, ref), 1e-5f) << dtype_name(gids.dtype());
  }
  ids.data<int64_t>()[5] = vocab;
  Tensor gtable = on_cuda(start);
  EXPECT_THROW(embedding_bwd(exec, ids, on_cuda(dout), gtable), Error);
}

// A task's vocabulary (3 symbols, at most 32: the chunked, atomic-free path) under many tokens, an
// odd width and one wider than a 32-column tile; ids on the host and on the device, i64 and i32.
// The CPU adds 20000 rows per entry in float in token order, so the tolerance allows its rounding.
TEST(ElementwiseBwdCuda, EmbeddingScatterSmallVocab) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(5);
  for (auto [vocab, d, n] : {std::tuple{int64_t(3), int64_t(64), int64_t(20000)},
                             {int64_t(32), int64_t(37), int64_t(4099)},
                             {int64_t(1), int64_t(5), int64_t(7)}}) {
    Tensor ids = Tensor::empty({n}, DType::i64);
    std::uniform_int_distribution<int64_t> id(0, vocab - 1);
    for (int64_t i = 0; i < n; ++i) ids.data<int64_t>()[i] = id(rng);
    const Tensor dout = testing::random_tensor({n, d}, rng);
    const Tensor start = testing::random_tensor({vocab, d}, rng);
    Tensor ref = start.copy();
    embedding_bwd(exec, ids, dout, ref);
    for (const Tensor& gids : {ids, on_cuda(ids), on_cuda(ids.to(DType::i32))}) {
      Tensor gtable = on_cuda(start);
      embedding_bwd(exec, gids, on_cuda(dout), gtable);
      EXPECT_LT(scaled_max_diff(gtable, ref), 5e-5f) << vocab << " " << dtype_name(gids.dtype());
    }
  }
}

TEST(ElementwiseBwdCuda, NegExp) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  const Tensor dA = testing::random_tensor({33, 16}, rng),
               A = testing::random_tensor({33, 16}, rng, -5.0f, -0.1f);
  Tensor dA_log = testing::random_tensor({33, 16}, rng), gdA_log = on_cuda(dA_log);
  neg_exp_bwd(exec, on_cuda(dA), on_cuda(A), gdA_log);
  neg_exp_bwd(exec, dA, A, dA_log);
  EXPECT_LT(scaled_max_diff(gdA_log, dA_log), 1e-6f);
}

}  // namespace
}  // namespace mamba::ops
