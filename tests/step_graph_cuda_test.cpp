// Decode through a CUDA graph (runtime::StepGraph) against eager Model::step on random small
// models: Mamba-1, Mamba-2 (with a gated MLP), Mamba-3 SISO (with the output norm) and MIMO, in
// f32 and bf16 GEMM weights, batch 1 and 3, 20 tokens after a prefill: the logits of every step
// and the final states must be the same bits (the graph replays the same kernels on the same
// buffers). A hybrid with attention stays eager through the same interface. Label `cuda`.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "models/attention.h"
#include "models/mamba1.h"
#include "models/mamba2.h"
#include "models/mamba3.h"
#include "models/model.h"
#include "runtime/step_graph.h"
#include "testing.h"

namespace mamba {
namespace {

constexpr int kSteps = 20;

models::ModelConfig small_config(const std::string& name) {
  models::ModelConfig c;
  c.d_model = 64;
  c.n_layer = 3;
  c.vocab_size = 100;
  if (name == "mamba1") {
    c.ssm_layer = models::MixerKind::mamba1;
    c.section<models::Mamba1Config>().d_state = 16;
  } else if (name == "mamba2" || name == "hybrid") {
    c.ssm_layer = models::MixerKind::mamba2;
    c.section<models::Mamba2Config>().d_state = 32;
    c.section<models::Mamba2Config>().head_dim = 16;
    c.d_intermediate = name == "mamba2" ? 96 : 0;
    if (name == "hybrid") {
      c.attn_layer_idx = {1};
      auto& attn = c.section<models::AttentionConfig>();
      attn.num_heads = 4;
      attn.num_heads_kv = 2;
      attn.rotary_emb_dim = 8;
      attn.causal = true;
    }
  } else {
    c.ssm_layer = models::MixerKind::mamba3;
    auto& m3 = c.section<models::Mamba3Config>();
    m3.d_state = 32;
    m3.head_dim = 16;
    m3.is_mimo = name == "mamba3-mimo";
    m3.mimo_rank = 2;
    m3.chunk_size = 16;
    m3.is_outproj_norm = name == "mamba3-siso";
  }
  models::finalize_model_config(c, "test:" + name);
  return c;
}

void expect_same_states(models::State& a, models::State& b, const std::string& what) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  EXPECT_EQ(a.position, b.position) << what;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    std::vector<Tensor> ta, tb;
    a.layers[i].visit([&](const char*, Tensor& t) { ta.push_back(t.to(Device::cpu)); });
    b.layers[i].visit([&](const char*, Tensor& t) { tb.push_back(t.to(Device::cpu)); });
    ASSERT_EQ(ta.size(), tb.size());
    for (size_t k = 0; k < ta.size(); ++k)
      EXPECT_EQ(testing::max_abs_diff(ta[k], tb[k]), 0.0f) << what << " layer " << i << " state " << k;
  }
}

class StepGraphCuda : public ::testing::TestWithParam<const char*> {};

TEST_P(StepGraphCuda, ReplaysMatchEagerBitForBit) {
  MAMBA_REQUIRE_CUDA();
  const std::string name = GetParam();
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t batch : {int64_t(1), int64_t(3)}) {
      const std::string what = name + " " + dtype_name(dtype) + " batch " + std::to_string(batch);
      models::Model model = models::Model::random(small_config(name), 7);
      model.to(Device::cuda);
      model.set_matmul_dtype(dtype);
      const bool graphed = name != "hybrid";
      EXPECT_EQ(runtime::StepGraph::supported(model), graphed) << what;
      std::mt19937 rng(static_cast<unsigned>(batch) + 17);
      std::uniform_int_distribution<int64_t> token(0, model.config().vocab_size - 1);
      Tensor prompt = Tensor::empty({batch, 5}, DType::i64);
      for (int64_t i = 0; i < prompt.numel(); ++i) prompt.data<int64_t>()[i] = token(rng);
      models::State eager = model.new_state(batch);
      model.forward(exec, prompt, eager);
      models::State graph_state = eager.copy();
      runtime::StepGraph graph(model);
      float worst = 0.0f;
      for (int s = 0; s < kSteps; ++s) {
        Tensor ids = Tensor::empty({batch}, DType::i64);
        for (int64_t b = 0; b < batch; ++b) ids.data<int64_t>()[b] = token(rng);
        const Tensor a = model.step(exec, ids, eager);
        const Tensor g =
            graph.step(exec, s % 2 ? ids : ids.to(Device::cuda), graph_state);  // host and device ids
        ASSERT_EQ(g.shape(), a.shape()) << what;
        worst = std::max(worst, testing::max_abs_diff(g.to(Device::cpu), a.to(Device::cpu)));
      }
      EXPECT_EQ(worst, 0.0f) << what;
      EXPECT_EQ(graph.replays(), graphed ? kSteps - 1 : 0) << what;
      expect_same_states(graph_state, eager, what);

      // A new state (other buffers): one eager step, then a new capture; still the same bits.
      models::State other = eager.copy(), other_eager = eager.copy();
      for (int s = 0; s < 3; ++s) {
        Tensor ids = Tensor::full({batch}, static_cast<float>(s + 1)).to(DType::i64);
        const float d = testing::max_abs_diff(graph.step(exec, ids, other).to(Device::cpu),
                                              model.step(exec, ids, other_eager).to(Device::cpu));
        EXPECT_EQ(d, 0.0f) << what << " rebound step " << s;
      }
      EXPECT_EQ(graph.replays(), graphed ? kSteps - 1 + 2 : 0) << what;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, StepGraphCuda,
                         ::testing::Values("mamba1", "mamba2", "mamba3-siso", "mamba3-mimo", "hybrid"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace mamba
