// Finite-difference gradient checks for the ops' hand-written backward (STYLE.md: "checked by
// finite differences per op"). The loss is a scalar recomputed from the inputs' current values,
// usually Σ out·w with fixed random weights w, accumulated in double.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mamba::testing {

// One input of the loss: `value` is perturbed in place (the loss closure must read the same
// buffer), `grad` is the analytic d loss / d value of the same shape.
struct GradInput {
  std::string name;
  Tensor value;
  Tensor grad;
};

// Σ out·w in double (out, w: same number of elements; w contiguous f32).
inline double weighted_sum(const Tensor& out, const Tensor& w) {
  const std::vector<float> o = out.to_vector();
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += double(o[i]) * w.f32()[i];
  return s;
}

// Central differences on up to `max_entries` entries of each input (all of them when fewer),
// compared as ||fd − analytic|| / max(||analytic||, floor) over the checked entries.
inline void expect_grads_match(const std::function<double()>& loss, const std::vector<GradInput>& inputs,
                               float eps = 1e-3f, float tol = 1e-2f, int64_t max_entries = 48) {
  std::mt19937 rng(1234);
  for (const GradInput& in : inputs) {
    ASSERT_TRUE(in.grad.defined()) << in.name << ": no analytic gradient";
    ASSERT_EQ(in.value.shape(), in.grad.shape()) << in.name;
    ASSERT_TRUE(in.value.is_contiguous()) << in.name;
    const int64_t n = in.value.numel();
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[i] = i;
    if (n > max_entries) {
      std::shuffle(idx.begin(), idx.end(), rng);
      idx.resize(static_cast<size_t>(max_entries));
    }
    const Tensor grad = in.grad.contiguous();
    double num = 0, den = 0;
    float* v = in.value.f32();
    for (int64_t i : idx) {
      const float keep = v[i];
      v[i] = keep + eps;
      const double up = loss();
      v[i] = keep - eps;
      const double down = loss();
      v[i] = keep;
      const double fd = (up - down) / (2.0 * double(eps));
      const double an = grad.f32()[i];
      num += (fd - an) * (fd - an);
      den += an * an;
    }
    const double rel = std::sqrt(num) / std::max(std::sqrt(den), 1e-3);
    EXPECT_LT(rel, tol) << in.name << ": finite-difference relative error " << rel << " over " << idx.size()
                        << " entries (||analytic|| = " << std::sqrt(den) << ")";
  }
}

// Whole-model check, one scalar per input: along the analytic gradient's direction ĝ the central
// difference (L(θ + sĝ) − L(θ − sĝ)) / 2s must equal ||g|| (a wrong gradient has a smaller
// projection on the true one, or the wrong length). The step s moves each entry by about
// `rel_step` of the tensor's RMS (at least of `floor`); the tolerance is tol·||g|| plus what a
// rounding error of 1e-7·|L| in the loss does to the difference. Every gradient must be nonzero.
inline void expect_directional_derivatives(const std::function<double()>& loss,
                                           const std::vector<GradInput>& inputs, double rel_step = 1e-3,
                                           double floor = 0.1, double tol = 1e-2) {
  const double noise = 1e-7 * std::fabs(loss());
  for (const GradInput& in : inputs) {
    ASSERT_TRUE(in.grad.defined()) << in.name << ": no analytic gradient";
    ASSERT_EQ(in.value.numel(), in.grad.numel()) << in.name;
    const std::vector<float> g = in.grad.to_vector();
    float* v = in.value.f32();
    const std::vector<float> keep(v, v + in.value.numel());
    double norm = 0, sum_sq = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      norm += double(g[i]) * g[i];
      sum_sq += double(keep[i]) * keep[i];
    }
    norm = std::sqrt(norm);
    ASSERT_GT(norm, 0.0) << in.name << ": zero gradient";
    const double n = static_cast<double>(g.size());
    const double step = rel_step * std::sqrt(n) * std::max(std::sqrt(sum_sq / n), floor);
    auto shifted = [&](double s) {
      for (size_t i = 0; i < g.size(); ++i) v[i] = static_cast<float>(keep[i] + s * g[i] / norm);
      return loss();
    };
    const double fd = (shifted(step) - shifted(-step)) / (2.0 * step);
    std::copy(keep.begin(), keep.end(), v);
    EXPECT_NEAR(fd, norm, tol * norm + noise / step) << in.name << ": directional difference vs ||g||";
  }
}

}  // namespace mamba::testing
