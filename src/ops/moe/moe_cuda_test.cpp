// MoE on CUDA vs the CPU op: routing (same experts, weights to rounding) for the three routers,
// the expert pipeline for each activation (decode's T = 1 to a few hundred tokens, many sort
// chunks), bf16 expert weights, and the backward (dx, d routing weights, expert weight gradients,
// d logits). Label `cuda`.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/moe/moe.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

struct Case {
  int64_t tokens, n_experts, k, n_group, topk_group, d, inter;
};

const Case kCases[] = {{1, 8, 2, 2, 1, 32, 16},
                       {5, 6, 2, 3, 2, 24, 10},
                       {37, 16, 4, 4, 2, 64, 48},
                       {300, 64, 6, 8, 4, 128, 96},
                       {64, 128, 8, 8, 4, 48, 32}};

MoeRouterParams params(MoeRouter kind, const Case& c, const Tensor& bias) {
  MoeRouterParams p;
  p.kind = kind;
  p.top_k = c.k;
  if (kind == MoeRouter::sigmoid_grouped) {
    p.n_group = c.n_group;
    p.topk_group = c.topk_group;
    p.norm_topk = true;
    p.routed_scaling = 2.5f;
    p.correction_bias = bias;
  }
  return p;
}

MoeExperts random_experts(const Case& c, MoeActivation act, std::mt19937& rng) {
  MoeExperts e;
  e.act = act;
  const int64_t hw = act == MoeActivation::relu2 ? c.inter : 2 * c.inter;
  for (int64_t i = 0; i < c.n_experts; ++i) {
    e.w_in.push_back(testing::random_tensor({hw, c.d}, rng, -0.3f, 0.3f));
    e.w_out.push_back(testing::random_tensor({c.d, c.inter}, rng, -0.3f, 0.3f));
  }
  return e;
}

MoeExperts experts_to(const MoeExperts& e, DType dtype) {
  MoeExperts g{{}, {}, e.act};
  for (const Tensor& w : e.w_in) g.w_in.push_back(w.to(dtype).to(Device::cuda));
  for (const Tensor& w : e.w_out) g.w_out.push_back(w.to(dtype).to(Device::cuda));
  return g;
}

MoeRouting routing_to_cuda(const MoeRouting& r) {
  return {on_cuda(r.experts), on_cuda(r.weights)};
}

const char* router_name(MoeRouter r) {
  return r == MoeRouter::softmax_topk   ? "softmax_topk"
         : r == MoeRouter::topk_softmax ? "topk_softmax"
                                        : "sigmoid";
}

TEST(MoeCuda, Route) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (const Case& c : kCases) {
    const Tensor logits = testing::random_tensor({c.tokens, c.n_experts}, rng, -4.0f, 4.0f);
    const Tensor bias = testing::random_tensor({c.n_experts}, rng, -0.1f, 0.1f);
    for (MoeRouter kind : {MoeRouter::softmax_topk, MoeRouter::topk_softmax, MoeRouter::sigmoid_grouped}) {
      for (bool norm : {false, true}) {
        MoeRouterParams p = params(kind, c, bias);
        p.norm_topk = norm;
        const MoeRouting ref = moe_route(exec, logits, p);
        MoeRouterParams pg = p;
        pg.correction_bias = on_cuda(p.correction_bias);
        const MoeRouting got = moe_route(exec, on_cuda(logits), pg);
        const std::string what = std::string(router_name(kind)) + " T=" + std::to_string(c.tokens) +
                                 " E=" + std::to_string(c.n_experts) + (norm ? " norm" : "");
        ASSERT_EQ(got.experts.device(), Device::cuda);
        const Tensor ids = got.experts.to(Device::cpu);
        for (int64_t i = 0; i < c.tokens * c.k; ++i)
          ASSERT_EQ(ids.data<int32_t>()[i], ref.experts.data<int32_t>()[i]) << what << " slot " << i;
        EXPECT_LT(scaled_max_diff(got.weights, ref.weights), 1e-5f) << what;
        // Backward of the router.
        const Tensor dw = testing::random_tensor({c.tokens, c.k}, rng);
        const Tensor dl_ref = moe_route_bwd(exec, dw, logits, ref, p);
        EXPECT_LT(scaled_max_diff(moe_route_bwd(exec, on_cuda(dw), on_cuda(logits), got, pg), dl_ref), 1e-5f)
            << what;
      }
    }
  }
}

TEST(MoeCuda, ExpertsForwardAndBackward) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (const Case& c : kCases) {
    for (MoeActivation act : {MoeActivation::swiglu, MoeActivation::relu2, MoeActivation::gelu_gated}) {
      const MoeExperts e = random_experts(c, act, rng);
      const MoeExperts eg = experts_to(e, DType::f32);
      const Tensor x = testing::random_tensor({c.tokens, c.d}, rng);
      const Tensor bias = testing::random_tensor({c.n_experts}, rng, -0.1f, 0.1f);
      const MoeRouting r = moe_route(exec, testing::random_tensor({c.tokens, c.n_experts}, rng, -3.0f, 3.0f),
                                     params(MoeRouter::sigmoid_grouped, c, bias));
      const MoeRouting rg = routing_to_cuda(r);
      const std::string what = "act " + std::to_string(int(act)) + " T=" + std::to_string(c.tokens) +
                               " E=" + std::to_string(c.n_experts);
      MoeSaved saved, saved_g;
      const Tensor y = moe_experts_train(exec, x, r, e, saved);
      const Tensor yg = moe_experts_train(exec, on_cuda(x), rg, eg, saved_g);
      EXPECT_LT(scaled_max_diff(yg, y), 1e-5f) << what;
      EXPECT_LT(scaled_max_diff(moe_experts(exec, on_cuda(x), rg, eg), y), 1e-5f) << what;
      EXPECT_EQ(saved_g.counts, saved.counts) << what;

      const Tensor dy = testing::random_tensor({c.tokens, c.d}, rng);
      std::vector<Tensor> dwi, dwo, dwi_g, dwo_g;
      for (int64_t i = 0; i < c.n_experts; ++i) {
        dwi.push_back(Tensor::zeros(e.w_in[i].shape()));
        dwo.push_back(Tensor::zeros(e.w_out[i].shape()));
        dwi_g.push_back(Tensor::zeros(e.w_in[i].shape(), DType::f32, Device::cuda));
        dwo_g.push_back(Tensor::zeros(e.w_out[i].shape(), DType::f32, Device::cuda));
      }
      Tensor dwts, dwts_g;
      const Tensor dx = moe_experts_bwd(exec, dy, saved, e, dwts, dwi, dwo);
      const Tensor dx_g = moe_experts_bwd(exec, on_cuda(dy), saved_g, eg, dwts_g, dwi_g, dwo_g);
      EXPECT_LT(scaled_max_diff(dx_g, dx), 1e-5f) << what;
      EXPECT_LT(scaled_max_diff(dwts_g, dwts), 1e-5f) << what;
      float worst = 0.0f;
      for (int64_t i = 0; i < c.n_experts; ++i) {
        worst = std::max(worst, scaled_max_diff(dwi_g[i], dwi[i]));
        worst = std::max(worst, scaled_max_diff(dwo_g[i], dwo[i]));
      }
      EXPECT_LT(worst, 1e-5f) << what;
    }
  }
}

// bf16 expert weights: the GEMMs round their inputs to bf16 (ops::linear), so compare with the CPU
// op on the bf16-rounded weights at bf16 accuracy.
TEST(MoeCuda, Bf16Weights) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  const Case c = kCases[3];
  MoeExperts e = random_experts(c, MoeActivation::swiglu, rng);
  for (Tensor& w : e.w_in) w = w.to(DType::bf16).to(DType::f32);
  for (Tensor& w : e.w_out) w = w.to(DType::bf16).to(DType::f32);
  const Tensor x = testing::random_tensor({c.tokens, c.d}, rng);
  const MoeRouting r = moe_route(exec, testing::random_tensor({c.tokens, c.n_experts}, rng, -3.0f, 3.0f),
                                 params(MoeRouter::softmax_topk, c, Tensor()));
  const Tensor y = moe_experts(exec, x, r, e);
  const Tensor yg = moe_experts(exec, on_cuda(x), routing_to_cuda(r), experts_to(e, DType::bf16));
  EXPECT_LT(testing::rel_error(yg.to(Device::cpu), y), 2e-2f);
}

TEST(MoeCuda, BadExpertIdThrows) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  const Case c = kCases[1];
  const MoeExperts eg = experts_to(random_experts(c, MoeActivation::swiglu, rng), DType::f32);
  MoeRouting r{Tensor::zeros({c.tokens, c.k}, DType::i32), Tensor::zeros({c.tokens, c.k})};
  r.experts.data<int32_t>()[3] = static_cast<int32_t>(c.n_experts);
  EXPECT_THROW(
      moe_experts(exec, on_cuda(testing::random_tensor({c.tokens, c.d}, rng)), routing_to_cuda(r), eg),
      Error);
}

}  // namespace
}  // namespace mamba::ops
