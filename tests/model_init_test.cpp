// From-scratch initialization follows the reference (SPEC §1.1, §2.1, §4.6): dt biases are the
// inverse softplus of dt in the configured [dt_min, dt_max), Mamba-1 A_log = ln(n+1), D = 1,
// norms = 1, out_proj ~ U(±1/√fan_in)/√n_layer, embedding std 0.02.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "models/mamba1.h"
#include "models/mamba2.h"
#include "models/model.h"
#include "ops/elementwise/activations.h"

namespace mamba {
namespace {

models::ModelConfig small_config(models::MixerKind kind) {
  models::ModelConfig c;
  c.d_model = 32;
  c.n_layer = 4;
  c.vocab_size = 64;
  c.ssm_layer = kind;
  auto& m1 = c.section<models::Mamba1Config>();
  m1.d_state = 8;
  m1.dt_min = 0.01;
  m1.dt_max = 0.02;
  auto& m2 = c.section<models::Mamba2Config>();
  m2.d_state = 8;
  m2.head_dim = 8;
  m2.dt_min = 0.01;
  m2.dt_max = 0.02;
  models::finalize_model_config(c, "test");
  return c;
}

TEST(ModelInit, FollowsTheReferenceScheme) {
  for (models::MixerKind kind : {models::MixerKind::mamba1, models::MixerKind::mamba2}) {
    models::Model model = models::Model::random(small_config(kind), 7);
    int checked = 0;
    model.visit_params([&](const models::ParamRef& p) {
      const std::vector<float> v = p.tensor->to_vector();
      const std::string& name = p.name;
      auto ends_with = [&](const std::string& s) {
        return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
      };
      if (ends_with("dt_bias") || ends_with("dt_proj.bias")) {
        for (float b : v) {
          const float dt = ops::softplus(b);
          EXPECT_GE(dt, 0.01f * 0.999f) << name;
          EXPECT_LT(dt, 0.02f * 1.001f) << name;
        }
        ++checked;
      } else if (ends_with("A_log") && p.shape.size() == 2) {
        for (size_t i = 0; i < v.size(); ++i)
          EXPECT_NEAR(v[i], std::log(float(i % p.shape[1] + 1)), 1e-6) << name;
        ++checked;
      } else if (ends_with(".D") || ends_with("norm.weight")) {
        for (float x : v) EXPECT_EQ(x, 1.0f) << name;
        ++checked;
      } else if (ends_with("out_proj.weight")) {
        const double bound = 1.0 / std::sqrt(double(p.shape[1])) / std::sqrt(4.0);
        double max_abs = 0;
        for (float x : v) max_abs = std::max(max_abs, double(std::fabs(x)));
        EXPECT_LE(max_abs, bound * 1.0001) << name;
        EXPECT_GT(max_abs, bound * 0.9) << name;
        ++checked;
      } else if (ends_with("embedding.weight")) {
        double ss = 0;
        for (float x : v) ss += double(x) * x;
        EXPECT_NEAR(std::sqrt(ss / v.size()), 0.02, 0.002) << name;
        ++checked;
      }
    });
    EXPECT_GE(checked, 4 * 4) << "every layer's dt bias, D, norm and out_proj were checked";
  }
}

}  // namespace
}  // namespace mamba
