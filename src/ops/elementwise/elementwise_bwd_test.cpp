// Finite-difference checks of the elementwise ops' backward: swiglu (both orders), the silu gate,
// softplus + bias + clamp (inside, clamped, past the softplus threshold), the embedding's
// scatter-add with repeated ids, and A = −exp(A_log).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "exec_testing.h"
#include "grad_check.h"
#include "ops/elementwise/elementwise.h"
#include "testing.h"

namespace mamba::ops {
namespace {

TEST(ElementwiseBwd, SwigluBothOrders) {
  std::mt19937 rng(1);
  for (bool gate_first : {false, true}) {
    Tensor h = testing::random_tensor({2, 3, 8}, rng, -3, 3), dout = testing::random_tensor({2, 3, 4}, rng);
    const Tensor dh = swiglu_bwd(exec, dout, h, gate_first);
    testing::expect_grads_match([&] { return testing::weighted_sum(swiglu(exec, h, gate_first), dout); },
                                {{"h", h, dh}});
  }
}

constexpr GateAct kActs[] = {GateAct::silu, GateAct::gelu, GateAct::gelu_tanh, GateAct::relu2};

std::string act_str(GateAct act, bool gate_first) {
  return "act " + std::to_string(int(act)) + " gate_first " + std::to_string(gate_first);
}

TEST(ElementwiseBwd, GatedActEveryActBothOrders) {
  std::mt19937 rng(6);
  for (GateAct act : kActs)
    for (bool gate_first : {false, true}) {
      Tensor h = testing::random_tensor({2, 3, 10}, rng, -3, 3),
             dout = testing::random_tensor({2, 3, 5}, rng);
      const Tensor dh = gated_act_bwd(exec, dout, h, act, gate_first);
      SCOPED_TRACE(act_str(act, gate_first));
      testing::expect_grads_match(
          [&] { return testing::weighted_sum(gated_act(exec, h, act, gate_first), dout); }, {{"h", h, dh}},
          1e-3f, 2e-3f, 60);
    }
}

TEST(ElementwiseBwd, ActivationEveryAct) {
  std::mt19937 rng(7);
  for (GateAct act : kActs) {
    Tensor x = testing::random_tensor({3, 2, 7}, rng, -3, 3), dout = testing::random_tensor({3, 2, 7}, rng);
    const Tensor dx = activation_bwd(exec, dout, x, act);
    SCOPED_TRACE(act_str(act, false));
    testing::expect_grads_match([&] { return testing::weighted_sum(activation(exec, x, act), dout); },
                                {{"x", x, dx}}, 1e-3f, 2e-3f, 60);
  }
}

// The derivatives in double, written out independently of gate_act.h.
double ref_act(GateAct act, double v) {
  switch (act) {
    case GateAct::silu:
      return v / (1.0 + std::exp(-v));
    case GateAct::gelu:
      return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    case GateAct::gelu_tanh:
      return 0.5 * v *
             (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
    case GateAct::relu2:
      return v > 0 ? v * v : 0.0;
  }
  return NAN;
}
double ref_grad(GateAct act, double v) {
  switch (act) {
    case GateAct::silu: {
      const double s = 1.0 / (1.0 + std::exp(-v));
      return s * (1.0 + v * (1.0 - s));
    }
    case GateAct::gelu:
      return 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) +
             v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * 3.14159265358979323846);
    case GateAct::gelu_tanh: {
      const double k = std::sqrt(2.0 / 3.14159265358979323846), t = std::tanh(k * (v + 0.044715 * v * v * v));
      return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
    }
    case GateAct::relu2:
      return v > 0 ? 2.0 * v : 0.0;
  }
  return NAN;
}

bool close(double got, double ref) {
  return std::fabs(got - ref) <= 1e-5 * (1.0 + std::fabs(ref));
}

// Strided inputs (column views with a uniform row stride, and a transposed view whose leading
// strides do not nest), rows longer than a parallel block, against the derivatives in double; the
// strided reads give the bits of the contiguous ones; GateAct::silu is swiglu_bwd exactly.
TEST(ElementwiseBwd, GatedActAndActivationStridedVsReference) {
  std::mt19937 rng(8);
  for (int64_t n : {3, 64, 4100}) {
    const Tensor wide = testing::random_tensor({3, 2, 2 * n + 5}, rng, -5, 5);
    for (const Tensor& h : {wide.slice(-1, 5, 2 * n + 5), wide.slice(-1, 1, 2 * n + 1).transpose(0, 1)}) {
      const Tensor hc = h.contiguous();
      Shape dshape = h.shape();
      dshape.back() = n;
      const Tensor dout = testing::random_tensor(dshape, rng);
      for (GateAct act : kActs)
        for (bool gate_first : {false, true}) {
          SCOPED_TRACE(act_str(act, gate_first) + " n " + std::to_string(n));
          const Tensor dh = gated_act_bwd(exec, dout, h, act, gate_first),
                       dhc = gated_act_bwd(exec, dout, hc, act, gate_first);
          ASSERT_EQ(dh.shape(), h.shape());
          ASSERT_TRUE(dh.is_contiguous());
          EXPECT_EQ(std::memcmp(dh.f32(), dhc.f32(), static_cast<size_t>(dh.numel()) * 4), 0);
          if (act == GateAct::silu) {
            const Tensor sw = swiglu_bwd(exec, dout, h, gate_first);
            EXPECT_EQ(std::memcmp(dh.f32(), sw.f32(), static_cast<size_t>(dh.numel()) * 4), 0);
          }
          const int64_t gate_off = gate_first ? 0 : n, value_off = gate_first ? n : 0;
          int bad = 0;
          for (int64_t r = 0; r < dout.numel() / n; ++r)
            for (int64_t i = 0; i < n; ++i) {
              const double gate = hc.f32()[r * 2 * n + gate_off + i],
                           value = hc.f32()[r * 2 * n + value_off + i];
              const double d = dout.f32()[r * n + i];
              const double dv = dh.f32()[r * 2 * n + value_off + i], dg = dh.f32()[r * 2 * n + gate_off + i];
              if ((!close(dv, d * ref_act(act, gate)) || !close(dg, d * value * ref_grad(act, gate))) &&
                  ++bad <= 3)
                ADD_FAILURE() << "row " << r << " col " << i << ": " << dv << " " << dg;
            }
        }
      // activation_bwd on the same strided view (x = h, dout of h's shape).
      const Tensor dx_out = testing::random_tensor(h.shape(), rng);
      for (GateAct act : kActs) {
        SCOPED_TRACE(act_str(act, false) + " activation n " + std::to_string(n));
        const Tensor dx = activation_bwd(exec, dx_out, h, act), dxc = activation_bwd(exec, dx_out, hc, act);
        ASSERT_EQ(dx.shape(), h.shape());
        EXPECT_EQ(std::memcmp(dx.f32(), dxc.f32(), static_cast<size_t>(dx.numel()) * 4), 0);
        int bad = 0;
        for (int64_t i = 0; i < dx.numel(); ++i)
          if (!close(dx.f32()[i], dx_out.f32()[i] * ref_grad(act, hc.f32()[i])) && ++bad <= 3)
            ADD_FAILURE() << "element " << i << ": " << dx.f32()[i];
      }
    }
  }
}

TEST(ElementwiseBwd, MulSilu) {
  std::mt19937 rng(2);
  Tensor y = testing::random_tensor({2, 3, 5}, rng, -2, 2), z = testing::random_tensor({2, 3, 5}, rng, -3, 3);
  Tensor dout = testing::random_tensor({2, 3, 5}, rng), dy, dz;
  mul_silu_bwd(exec, dout, y, z, dy, dz);
  testing::expect_grads_match(
      [&] {
        Tensor out = y.copy();
        mul_silu_(exec, out, z);
        return testing::weighted_sum(out, dout);
      },
      {{"y", y, dy}, {"z", z, dz}});
}

TEST(ElementwiseBwd, SoftplusBiasClamp) {
  std::mt19937 rng(3);
  // Values around the clamp bounds (0.3, 2) and past the threshold 20 (with hi = infinity).
  for (auto [lo_, hi_, offset] : {std::tuple{0.3f, 2.0f, 0.0f}, std::tuple{0.0f, INFINITY, 21.0f}}) {
    const float lo = lo_, hi = hi_;  // named copies: a lambda may not capture structured bindings (C++17)
    Tensor raw = testing::random_tensor({2, 4, 6}, rng, -3 + offset, 3 + offset),
           bias = testing::random_tensor({6}, rng);
    Tensor dout = testing::random_tensor({2, 4, 6}, rng), dbias = Tensor::zeros({6});
    const Tensor draw = softplus_bias_clamp_bwd(exec, dout, raw, bias, lo, hi, dbias);
    testing::expect_grads_match(
        [&] { return testing::weighted_sum(softplus_bias_clamp(exec, raw, bias, lo, hi), dout); },
        {{"raw", raw, draw}, {"bias", bias, dbias}});
  }
}

TEST(ElementwiseBwd, EmbeddingScatterAdd) {
  std::mt19937 rng(4);
  Tensor table = testing::random_tensor({7, 5}, rng);
  Tensor ids = Tensor::empty({2, 4}, DType::i64);
  const int64_t values[] = {1, 3, 1, 6, 0, 3, 3, 2};
  for (int64_t i = 0; i < 8; ++i) ids.data<int64_t>()[i] = values[i];
  Tensor dout = testing::random_tensor({2, 4, 5}, rng), dtable = Tensor::zeros({7, 5});
  embedding_bwd(exec, ids, dout, dtable);
  testing::expect_grads_match([&] { return testing::weighted_sum(embedding(exec, ids, table), dout); },
                              {{"table", table, dtable}}, 1e-3f, 1e-2f, 35);
}

TEST(ElementwiseBwd, NegExp) {
  std::mt19937 rng(5);
  Tensor A_log = testing::random_tensor({3, 4}, rng), dA = testing::random_tensor({3, 4}, rng);
  auto A_of = [&] {
    Tensor A = Tensor::empty({3, 4});
    for (int64_t i = 0; i < 12; ++i) A.f32()[i] = -std::exp(A_log.f32()[i]);
    return A;
  };
  Tensor dA_log = Tensor::zeros({3, 4});
  neg_exp_bwd(exec, dA, A_of(), dA_log);
  testing::expect_grads_match([&] { return testing::weighted_sum(A_of(), dA); }, {{"A_log", A_log, dA_log}});
}

}  // namespace
}  // namespace mamba::ops
