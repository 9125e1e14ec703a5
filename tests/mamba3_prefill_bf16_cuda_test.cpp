// Mamba-3 prefill with bf16 weights at the tensor-core scan's head shape (head_dim 64, d_state 128),
// where inference (Model::forward) hands the scan bf16 q/k/x (Mamba3ScanArgs::bf16_operands: the
// prepare writes bf16, x is converted once from its in_proj columns) and training's forward keeps
// f32 operands that the scan rounds itself: the same roundings, so the logits agree to float noise;
// both within the bf16 tolerance (2e-2) of the CPU fp32 forward, and one-token steps continue the
// state a bf16-operand prefill left. SISO and MIMO rank 2; the fixtures' heads (16 × 32) have no
// tensor-core kernel, so the golden tests do not reach this path. Label `cuda`.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "models/mamba3.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

using testing::scaled_max_diff;

class Mamba3PrefillBf16 : public ::testing::TestWithParam<bool> {};  // MIMO?

TEST_P(Mamba3PrefillBf16, Bf16OperandsMatchF32Operands) {
  MAMBA_REQUIRE_CUDA();
  const bool mimo = GetParam();
  models::ModelConfig c;
  c.d_model = 128;  // d_inner 256: 4 heads of 64
  c.n_layer = 2;
  c.vocab_size = 100;
  c.ssm_layer = models::MixerKind::mamba3;
  auto& m3 = c.section<models::Mamba3Config>();
  m3.d_state = 128;
  m3.head_dim = 64;
  m3.chunk_size = 64;
  m3.is_mimo = mimo;
  m3.mimo_rank = 2;
  models::finalize_model_config(c, mimo ? "test:mamba3-mimo-64x128" : "test:mamba3-siso-64x128");
  const models::Model cpu = models::Model::random(c, 11);
  models::Model gpu = models::Model::random(c, 11);
  gpu.to(Device::cuda);
  gpu.set_matmul_dtype(DType::bf16);

  std::mt19937 rng(12);
  std::uniform_int_distribution<int64_t> token(0, c.vocab_size - 1);
  const int64_t batch = 2, seq_len = 77, k = 70;
  Tensor ids = Tensor::empty({batch, seq_len}, DType::i64);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = token(rng);

  models::State cpu_state = cpu.new_state(batch);
  const Tensor ref = cpu.forward(exec, ids, cpu_state);  // fp32 on the CPU
  models::State state = gpu.new_state(batch);
  const Tensor inference = gpu.forward(exec, ids, state);  // bf16 operands
  models::Activations acts;
  const Tensor training = gpu.forward_train(exec, ids, acts);  // f32 operands, rounded by the scan
  EXPECT_LT(scaled_max_diff(inference, training.to(Device::cpu)), 1e-4f) << "inference vs training forward";
  EXPECT_LT(scaled_max_diff(inference, ref), 2e-2f) << "bf16 vs the CPU fp32 forward";

  // A prefill of k tokens (bf16 operands), then steps from its state.
  models::State st = gpu.new_state(batch);
  gpu.forward(exec, ids.slice(1, 0, k).contiguous(), st);
  for (int64_t t = k; t < seq_len; ++t)
    EXPECT_LT(
        scaled_max_diff(gpu.step(exec, ids.select(1, t).contiguous(), st), ref.select(1, t).contiguous()),
        2e-2f)
        << "step " << t;
}

INSTANTIATE_TEST_SUITE_P(Mamba3, Mamba3PrefillBf16, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "mimo" : "siso"; });

}  // namespace
}  // namespace mamba
