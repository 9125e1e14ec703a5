// MoE on the CPU: the three routers against a naive per-token reference (stable sorts, double
// math), the grouped expert pipeline against dense per-token evaluation of every expert (each
// activation; decode's T = 1; experts without tokens), bad input, and the backward by finite
// differences (x, expert weights, routing weights, router logits).
#include "ops/moe/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "exec_testing.h"
#include "grad_check.h"
#include "testing.h"

namespace mamba::ops {
namespace {

double sigmoid_d(double v) {
  return 1.0 / (1.0 + std::exp(-v));
}

// Reference router for one token: indices and weights (double math).
void ref_route(const float* l, int64_t n, const MoeRouterParams& p, const float* bias, std::vector<int>& idx,
               std::vector<double>& w) {
  const int64_t k = p.top_k;
  std::vector<double> score(static_cast<size_t>(n)), choice(static_cast<size_t>(n));
  double m = -INFINITY, s = 0;
  for (int64_t e = 0; e < n; ++e) m = std::max(m, double(l[e]));
  for (int64_t e = 0; e < n; ++e) s += std::exp(l[e] - m);
  for (int64_t e = 0; e < n; ++e) {
    switch (p.kind) {
      case MoeRouter::softmax_topk:
        score[e] = std::exp(l[e] - m) / s;
        break;
      case MoeRouter::topk_softmax:
        score[e] = l[e];
        break;
      case MoeRouter::sigmoid_grouped:
        score[e] = sigmoid_d(l[e]);
        break;
    }
    choice[e] = score[e] + (p.kind == MoeRouter::sigmoid_grouped && bias ? bias[e] : 0.0);
  }
  if (p.kind == MoeRouter::sigmoid_grouped) {
    const int64_t gs = n / p.n_group;
    std::vector<double> gscore(static_cast<size_t>(p.n_group));
    for (int64_t g = 0; g < p.n_group; ++g) {
      std::vector<double> v(choice.begin() + g * gs, choice.begin() + (g + 1) * gs);
      std::sort(v.rbegin(), v.rend());
      gscore[g] = v[0] + (gs >= 2 ? v[1] : 0.0);
    }
    std::vector<int> order(static_cast<size_t>(p.n_group));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return gscore[a] > gscore[b]; });
    for (int64_t r = p.topk_group; r < p.n_group; ++r)
      for (int64_t e = order[r] * gs; e < (order[r] + 1) * gs; ++e) choice[e] = 0.0;
  }
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return choice[a] > choice[b]; });
  idx.assign(order.begin(), order.begin() + k);
  w.resize(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) w[j] = score[idx[j]];
  if (p.kind == MoeRouter::topk_softmax) {
    const double m0 = w[0];
    double z = 0;
    for (int64_t j = 0; j < k; ++j) z += std::exp(w[j] - m0);
    for (int64_t j = 0; j < k; ++j) w[j] = std::exp(w[j] - m0) / z;
  }
  if (p.norm_topk) {
    double z = 0;
    for (double v : w) z += v;
    for (double& v : w) v /= z + (p.kind == MoeRouter::sigmoid_grouped ? 1e-20 : 0.0);
  }
  for (double& v : w) v *= p.routed_scaling;
}

double gelu_d(double v) {
  return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
}

// Dense reference: every token through the experts it routes to, in double.
std::vector<double> ref_experts(const Tensor& x, const MoeRouting& r, const MoeExperts& e) {
  const int64_t tokens = x.size(0), d = x.size(1), k = r.experts.size(1);
  const int64_t hw = e.w_in[0].size(0), inter = e.w_out[0].size(1);
  std::vector<double> y(static_cast<size_t>(tokens * d), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int ex = r.experts.data<int32_t>()[t * k + j];
      const float* wi = e.w_in[ex].f32();
      const float* wo = e.w_out[ex].f32();
      std::vector<double> h(static_cast<size_t>(hw)), a(static_cast<size_t>(inter));
      for (int64_t o = 0; o < hw; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < d; ++i) acc += double(wi[o * d + i]) * x.f32()[t * d + i];
        h[o] = acc;
      }
      for (int64_t i = 0; i < inter; ++i) {
        switch (e.act) {
          case MoeActivation::swiglu:
            a[i] = h[i] * sigmoid_d(h[i]) * h[inter + i];
            break;
          case MoeActivation::gelu_gated:
            a[i] = gelu_d(h[i]) * h[inter + i];
            break;
          case MoeActivation::relu2:
            a[i] = std::max(h[i], 0.0) * std::max(h[i], 0.0);
            break;
        }
      }
      const double wt = r.weights.f32()[t * k + j];
      for (int64_t o = 0; o < d; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < inter; ++i) acc += double(wo[o * inter + i]) * a[i];
        y[t * d + o] += wt * acc;
      }
    }
  }
  return y;
}

MoeExperts random_experts(int64_t n_experts, int64_t d, int64_t inter, MoeActivation act, std::mt19937& rng) {
  MoeExperts e;
  e.act = act;
  const int64_t hw = act == MoeActivation::relu2 ? inter : 2 * inter;
  for (int64_t i = 0; i < n_experts; ++i) {
    e.w_in.push_back(testing::random_tensor({hw, d}, rng, -0.5f, 0.5f));
    e.w_out.push_back(testing::random_tensor({d, inter}, rng, -0.5f, 0.5f));
  }
  return e;
}

const char* router_name(MoeRouter r) {
  return r == MoeRouter::softmax_topk   ? "softmax_topk"
         : r == MoeRouter::topk_softmax ? "topk_softmax"
                                        : "sigmoid";
}

struct Case {
  int64_t tokens, n_experts, k, n_group, topk_group;
};

TEST(Moe, RoutersMatchReference) {
  std::mt19937 rng(1);
  for (const Case c : {Case{1, 4, 2, 1, 1}, Case{7, 8, 2, 2, 1}, Case{16, 16, 4, 4, 2}, Case{33, 6, 1, 3, 2},
                       Case{5, 8, 8, 4, 4}, Case{9, 32, 6, 8, 3}, Case{3, 5, 3, 5, 2}}) {
    const Tensor logits = testing::random_tensor({c.tokens, c.n_experts}, rng, -3.0f, 3.0f);
    const Tensor bias = testing::random_tensor({c.n_experts}, rng, -0.2f, 0.2f);
    for (MoeRouter kind : {MoeRouter::softmax_topk, MoeRouter::topk_softmax, MoeRouter::sigmoid_grouped}) {
      for (bool norm : {false, true}) {
        for (bool with_bias : {false, true}) {
          if (with_bias && kind != MoeRouter::sigmoid_grouped) continue;
          MoeRouterParams p;
          p.kind = kind;
          p.top_k = c.k;
          p.norm_topk = norm;
          p.routed_scaling = norm ? 2.5f : 1.0f;
          if (kind == MoeRouter::sigmoid_grouped) {
            p.n_group = c.n_group;
            p.topk_group = c.topk_group;
            if (with_bias) p.correction_bias = bias;
          }
          SCOPED_TRACE(std::string(router_name(kind)) + " T=" + std::to_string(c.tokens) +
                       " E=" + std::to_string(c.n_experts) + " k=" + std::to_string(c.k) +
                       (norm ? " norm" : "") + (with_bias ? " bias" : ""));
          const MoeRouting r = moe_route(exec, logits, p);
          ASSERT_EQ(r.experts.shape(), (Shape{c.tokens, c.k}));
          ASSERT_EQ(r.weights.shape(), (Shape{c.tokens, c.k}));
          for (int64_t t = 0; t < c.tokens; ++t) {
            std::vector<int> idx;
            std::vector<double> w;
            ref_route(logits.f32() + t * c.n_experts, c.n_experts, p, with_bias ? bias.f32() : nullptr, idx,
                      w);
            for (int64_t j = 0; j < c.k; ++j) {
              EXPECT_EQ(r.experts.data<int32_t>()[t * c.k + j], idx[j]) << "token " << t << " slot " << j;
              EXPECT_NEAR(r.weights.f32()[t * c.k + j], w[j], 2e-6 * std::max(1.0, std::fabs(w[j])))
                  << "token " << t << " slot " << j;
            }
          }
        }
      }
    }
  }
}

// Ties go to the lower index, in every router and in the group selection.
TEST(Moe, TiesPickLowerIndex) {
  const Tensor logits = Tensor::from_vector({0.5f, 1.0f, 1.0f, 0.5f, 1.0f, 0.0f, 0.5f, 0.5f}, {1, 8});
  for (MoeRouter kind : {MoeRouter::softmax_topk, MoeRouter::topk_softmax, MoeRouter::sigmoid_grouped}) {
    MoeRouterParams p;
    p.kind = kind;
    p.top_k = 4;
    const MoeRouting r = moe_route(exec, logits, p);
    const std::vector<int32_t> got(r.experts.data<int32_t>(), r.experts.data<int32_t>() + 4);
    EXPECT_EQ(got, (std::vector<int32_t>{1, 2, 4, 0})) << router_name(kind);
  }
  // Groups {0,1} {2,3} {4,5} {6,7}: groups 2 and 3 hold the same two values and tie; keeping 3
  // groups keeps group 2, so experts 6 and 7 are masked to 0.
  MoeRouterParams p;
  p.kind = MoeRouter::sigmoid_grouped;
  p.top_k = 3;
  p.n_group = 4;
  p.topk_group = 3;
  const Tensor l2 = Tensor::from_vector({2.0f, 2.0f, 1.0f, 1.5f, 0.2f, 0.1f, 0.1f, 0.2f}, {1, 8});
  const MoeRouting r = moe_route(exec, l2, p);
  const std::vector<int32_t> got(r.experts.data<int32_t>(), r.experts.data<int32_t>() + 3);
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 3}));
  p.top_k = 6;  // all of groups 0, 1, 2: the masked group 3 scores 0 and comes after them
  const MoeRouting r6 = moe_route(exec, l2, p);
  const std::vector<int32_t> got6(r6.experts.data<int32_t>(), r6.experts.data<int32_t>() + 6);
  EXPECT_EQ(got6, (std::vector<int32_t>{0, 1, 3, 2, 4, 5}));
}

TEST(Moe, ExpertsMatchDenseReference) {
  std::mt19937 rng(2);
  for (MoeActivation act : {MoeActivation::swiglu, MoeActivation::relu2, MoeActivation::gelu_gated}) {
    for (const Case c :
         {Case{1, 8, 2, 2, 1}, Case{13, 6, 2, 3, 2}, Case{40, 16, 4, 4, 2}, Case{4, 3, 3, 1, 1}}) {
      for (MoeRouter kind : {MoeRouter::softmax_topk, MoeRouter::topk_softmax, MoeRouter::sigmoid_grouped}) {
        const int64_t d = 24, inter = 10;
        const MoeExperts e = random_experts(c.n_experts, d, inter, act, rng);
        const Tensor x = testing::random_tensor({c.tokens, d}, rng);
        MoeRouterParams p;
        p.kind = kind;
        p.top_k = c.k;
        p.n_group = c.n_group;
        p.topk_group = c.topk_group;
        p.norm_topk = kind == MoeRouter::sigmoid_grouped;
        const MoeRouting r =
            moe_route(exec, testing::random_tensor({c.tokens, c.n_experts}, rng, -2.0f, 2.0f), p);
        const Tensor y = moe_experts(exec, x, r, e);
        ASSERT_EQ(y.shape(), (Shape{c.tokens, d}));
        const std::vector<double> ref = ref_experts(x, r, e);
        double num = 0, den = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
          num += (y.f32()[i] - ref[i]) * (y.f32()[i] - ref[i]);
          den += ref[i] * ref[i];
        }
        EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), 1e-5)
            << router_name(kind) << " act " << int(act) << " T=" << c.tokens;
      }
    }
  }
}

// A hand-made routing where expert 2 of 4 gets no token and expert 0 gets most of them.
TEST(Moe, IdleExpertAndBadIds) {
  std::mt19937 rng(3);
  const MoeExperts e = random_experts(4, 8, 6, MoeActivation::swiglu, rng);
  const Tensor x = testing::random_tensor({5, 8}, rng);
  MoeRouting r;
  std::vector<float> ids_f = {0, 1, 0, 3, 0, 1, 3, 0, 1, 0};
  r.experts = Tensor::empty({5, 2}, DType::i32);
  for (int i = 0; i < 10; ++i) r.experts.data<int32_t>()[i] = static_cast<int32_t>(ids_f[i]);
  r.weights = testing::random_tensor({5, 2}, rng, 0.0f, 1.0f);
  const Tensor y = moe_experts(exec, x, r, e);
  const std::vector<double> ref = ref_experts(x, r, e);
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_NEAR(y.f32()[i], ref[i], 1e-5 * std::max(1.0, std::fabs(ref[i])));
  // The saved counts say who got rows; the idle expert's gradients stay zero.
  MoeSaved saved;
  moe_experts_train(exec, x, r, e, saved);
  EXPECT_EQ(saved.counts, (std::vector<int64_t>{5, 3, 0, 2}));
  std::vector<Tensor> dwi, dwo;
  for (int i = 0; i < 4; ++i) {
    dwi.push_back(Tensor::zeros(e.w_in[i].shape()));
    dwo.push_back(Tensor::zeros(e.w_out[i].shape()));
  }
  Tensor dweights;
  moe_experts_bwd(exec, testing::random_tensor({5, 8}, rng), saved, e, dweights, dwi, dwo);
  for (float v : dwi[2].to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : dwo[2].to_vector()) EXPECT_EQ(v, 0.0f);
  // An id outside [0, E) is an error, not a read out of bounds.
  r.experts.data<int32_t>()[3] = 4;
  EXPECT_THROW(moe_experts(exec, x, r, e), Error);
  r.experts.data<int32_t>()[3] = -1;
  EXPECT_THROW(moe_experts(exec, x, r, e), Error);
}

TEST(Moe, BadArguments) {
  MoeRouterParams p;
  p.top_k = 5;
  EXPECT_THROW(moe_route(exec, Tensor::zeros({2, 4}), p), Error);
  p.top_k = 2;
  p.kind = MoeRouter::sigmoid_grouped;
  p.n_group = 3;
  EXPECT_THROW(moe_route(exec, Tensor::zeros({2, 4}), p), Error);
  p.n_group = 2;
  p.topk_group = 3;
  EXPECT_THROW(moe_route(exec, Tensor::zeros({2, 4}), p), Error);
  std::mt19937 rng(4);
  MoeExperts e = random_experts(2, 8, 6, MoeActivation::swiglu, rng);
  MoeRouting r{Tensor::zeros({3, 1}, DType::i32), Tensor::zeros({3, 1})};
  EXPECT_THROW(moe_experts(exec, Tensor::zeros({3, 7}), r, e), Error);
  e.w_out[1] = Tensor::zeros({8, 5});
  EXPECT_THROW(moe_experts(exec, Tensor::zeros({3, 8}), r, e), Error);
}

// Logits whose entries are at least 0.15 apart within a row, so the finite-difference steps never
// change the selection.
Tensor separated_logits(int64_t tokens, int64_t n, std::mt19937& rng) {
  Tensor l = Tensor::empty({tokens, n});
  std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t e = 0; e < n; ++e) l.f32()[t * n + e] = 0.2f * (perm[e] - 0.5f * n) + noise(rng);
  }
  return l;
}

TEST(MoeBwd, RouterLogits) {
  std::mt19937 rng(5);
  for (MoeRouter kind : {MoeRouter::softmax_topk, MoeRouter::topk_softmax, MoeRouter::sigmoid_grouped}) {
    for (bool norm : {false, true}) {
      MoeRouterParams p;
      p.kind = kind;
      p.top_k = 3;
      p.norm_topk = norm;
      p.routed_scaling = norm ? 1.7f : 1.0f;
      if (kind == MoeRouter::sigmoid_grouped) {
        p.n_group = 4;
        p.topk_group = 2;
      }
      Tensor logits = separated_logits(6, 8, rng);
      const Tensor dout = testing::random_tensor({6, 3}, rng);
      const MoeRouting r = moe_route(exec, logits, p);
      const Tensor dl = moe_route_bwd(exec, dout, logits, r, p);
      SCOPED_TRACE(std::string(router_name(kind)) + (norm ? " norm" : ""));
      testing::expect_grads_match(
          [&] { return testing::weighted_sum(moe_route(exec, logits, p).weights, dout); },
          {{"logits", logits, dl}});
    }
  }
}

TEST(MoeBwd, ExpertsAndRouting) {
  std::mt19937 rng(6);
  for (MoeActivation act : {MoeActivation::swiglu, MoeActivation::relu2, MoeActivation::gelu_gated}) {
    for (int64_t tokens : {1, 7}) {
      const int64_t n_experts = 5, d = 6, inter = 4, k = 2;
      MoeExperts e = random_experts(n_experts, d, inter, act, rng);
      Tensor x = testing::random_tensor({tokens, d}, rng);
      MoeRouterParams p;
      p.kind = MoeRouter::softmax_topk;
      p.top_k = k;
      p.norm_topk = true;
      Tensor logits = separated_logits(tokens, n_experts, rng);
      const Tensor dout = testing::random_tensor({tokens, d}, rng);
      // Through the routing weights as inputs.
      MoeRouting r = moe_route(exec, logits, p);
      MoeSaved saved;
      moe_experts_train(exec, x, r, e, saved);
      std::vector<Tensor> dwi, dwo;
      for (int64_t i = 0; i < n_experts; ++i) {
        dwi.push_back(Tensor::zeros(e.w_in[i].shape()));
        dwo.push_back(Tensor::zeros(e.w_out[i].shape()));
      }
      Tensor dweights;
      const Tensor dx = moe_experts_bwd(exec, dout, saved, e, dweights, dwi, dwo);
      SCOPED_TRACE("act " + std::to_string(int(act)) + " T=" + std::to_string(tokens));
      std::vector<testing::GradInput> inputs = {{"x", x, dx}, {"weights", r.weights, dweights}};
      for (int64_t i = 0; i < n_experts; ++i) {
        if (saved.counts[i] == 0) continue;
        inputs.push_back({"w_in" + std::to_string(i), e.w_in[i], dwi[i]});
        inputs.push_back({"w_out" + std::to_string(i), e.w_out[i], dwo[i]});
      }
      testing::expect_grads_match([&] { return testing::weighted_sum(moe_experts(exec, x, r, e), dout); },
                                  inputs);
      // End to end through the router.
      const Tensor dl = moe_route_bwd(exec, dweights, logits, r, p);
      testing::expect_grads_match(
          [&] { return testing::weighted_sum(moe_experts(exec, x, moe_route(exec, logits, p), e), dout); },
          {{"logits", logits, dl}});
    }
  }
}

TEST(MoeBwd, SigmoidGroupedEndToEnd) {
  std::mt19937 rng(7);
  const int64_t tokens = 5, n_experts = 8, d = 6, inter = 3;
  MoeExperts e = random_experts(n_experts, d, inter, MoeActivation::relu2, rng);
  const Tensor x = testing::random_tensor({tokens, d}, rng);
  MoeRouterParams p;
  p.kind = MoeRouter::sigmoid_grouped;
  p.top_k = 3;
  p.n_group = 4;
  p.topk_group = 2;
  p.norm_topk = true;
  p.routed_scaling = 2.5f;
  p.correction_bias = Tensor::zeros({n_experts});
  Tensor logits = separated_logits(tokens, n_experts, rng);
  const Tensor dout = testing::random_tensor({tokens, d}, rng);
  const MoeRouting r = moe_route(exec, logits, p);
  MoeSaved saved;
  moe_experts_train(exec, x, r, e, saved);
  std::vector<Tensor> dwi, dwo;
  for (int64_t i = 0; i < n_experts; ++i) {
    dwi.push_back(Tensor::zeros(e.w_in[i].shape()));
    dwo.push_back(Tensor::zeros(e.w_out[i].shape()));
  }
  Tensor dweights;
  moe_experts_bwd(exec, dout, saved, e, dweights, dwi, dwo);
  const Tensor dl = moe_route_bwd(exec, dweights, logits, r, p);
  testing::expect_grads_match(
      [&] { return testing::weighted_sum(moe_experts(exec, x, moe_route(exec, logits, p), e), dout); },
      {{"logits", logits, dl}});
}

}  // namespace
}  // namespace mamba::ops
