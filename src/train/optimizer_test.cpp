// AdamW against hand-computed numbers (two steps, with and without weight decay), clipping,
// schedules, and the optimizer state round trip.
#include "train/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "exec_testing.h"
#include "models/config.h"

namespace mamba::train {
namespace {

models::Model tiny_model() {
  const nlohmann::json j = {
      {"d_model", 8}, {"n_layer", 1}, {"vocab_size", 5}, {"ssm_cfg", {{"layer", "Mamba1"}, {"d_state", 4}}}};
  return models::Model::random(models::parse_model_config(j, "test"), 1);
}

// Sets every element of every parameter (or gradient) to `value`.
void fill_all(models::Model& m, float value) {
  m.visit_params([&](const models::ParamRef& p) { p.tensor->fill(value); });
}

// First element of a parameter by name.
float first(models::Model& m, const std::string& name) {
  float v = NAN;
  m.visit_params([&](const models::ParamRef& p) {
    if (p.name == name) v = p.tensor->f32()[0];
  });
  return v;
}

TEST(AdamW, TwoStepsMatchHandComputedValues) {
  models::Model model = tiny_model();
  models::Model grads = model.new_grads();
  fill_all(model, 0.5f);
  AdamW opt(model, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1});
  // p ← 0.5·(1 − 0.1·0.1) − 0.1·ĝ/(|ĝ| + eps) with m̂ = 0.2, √v̂ = 0.2 after step 1; step 2
  // (g = −0.1): m = 0.008, v = 4.996e-5, m̂ = 0.008/0.19, √v̂ = √(4.996e-5/0.001999).
  const double decayed[] = {0.39500000499999977, 0.36441630266867575};
  const double no_decay[] = {0.40000000499999977, 0.37336630271867577};
  const float g[] = {0.2f, -0.1f};
  for (int t = 0; t < 2; ++t) {
    fill_all(grads, g[t]);
    opt.step(exec, model, grads, 0.1);
    EXPECT_NEAR(first(model, "backbone.layers.0.mixer.in_proj.weight"), decayed[t], 1e-6) << "step " << t + 1;
    EXPECT_NEAR(first(model, "backbone.layers.0.mixer.A_log"), no_decay[t], 1e-6) << "A_log is not decayed";
    EXPECT_NEAR(first(model, "backbone.layers.0.mixer.D"), no_decay[t], 1e-6);
    EXPECT_NEAR(first(model, "backbone.norm_f.weight"), no_decay[t], 1e-6);
    EXPECT_NEAR(first(model, "backbone.layers.0.mixer.dt_proj.bias"), no_decay[t], 1e-6);
    EXPECT_NEAR(first(model, "backbone.embedding.weight"), decayed[t], 1e-6);
  }
  EXPECT_EQ(opt.steps(), 2);
}

TEST(AdamW, ClipScalesToTheMaximumNorm) {
  models::Model model = tiny_model();
  models::Model grads = model.new_grads();
  const double n = static_cast<double>(model.n_params());
  fill_all(grads, 0.5f);
  const double norm = clip_grad_norm(exec, grads, 1.0);
  EXPECT_NEAR(norm, 0.5 * std::sqrt(n), 1e-3);
  EXPECT_NEAR(clip_grad_norm(exec, grads, 0.0), 1.0, 1e-5);  // measured only
  EXPECT_NEAR(first(grads, "backbone.norm_f.weight"), 0.5 * 1.0 / (0.5 * std::sqrt(n) + 1e-6), 1e-7);
  fill_all(grads, 1e-4f);
  clip_grad_norm(exec, grads, 1.0);  // below the maximum: unchanged
  EXPECT_FLOAT_EQ(first(grads, "backbone.norm_f.weight"), 1e-4f);
  zero_grads(exec, grads);
  EXPECT_EQ(clip_grad_norm(exec, grads, 1.0), 0.0);
}

TEST(Schedule, WarmupCosineAndConstant) {
  LrSchedule s{
      .kind = ScheduleKind::cosine, .lr = 1e-3, .warmup_steps = 10, .total_steps = 110, .min_lr = 1e-4};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(4), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);
  EXPECT_NEAR(s.at(60), 5.5e-4, 1e-12);  // halfway: (lr + min_lr) / 2
  EXPECT_NEAR(s.at(110), 1e-4, 1e-12);
  EXPECT_NEAR(s.at(500), 1e-4, 1e-12);
  s.kind = ScheduleKind::constant;
  EXPECT_DOUBLE_EQ(s.at(5), 6e-4);
  EXPECT_DOUBLE_EQ(s.at(60), 1e-3);
  EXPECT_EQ(parse_schedule_kind("cosine"), ScheduleKind::cosine);
  EXPECT_THROW(parse_schedule_kind("linear"), Error);
}

TEST(AdamW, StateRoundTripContinuesIdentically) {
  models::Model a = tiny_model(), c = tiny_model();
  models::Model grads = a.new_grads();
  AdamW opt_a(a, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
  for (float g : {0.3f, -0.1f}) {
    fill_all(grads, g);
    opt_a.step(exec, a, grads, 1e-2);
  }
  const std::string path = ::testing::TempDir() + "/mamba_optimizer_test.safetensors";
  opt_a.save(path, {{"data_step", "7"}});
  AdamW opt_c(c, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
  const auto meta = opt_c.load(path);
  EXPECT_EQ(meta.at("data_step"), "7");
  EXPECT_EQ(opt_c.steps(), 2);
  // Same weights, same moments, same step count: the next updates agree exactly.
  std::vector<Tensor> weights;
  a.visit_params([&](const models::ParamRef& p) { weights.push_back(p.tensor->copy()); });
  size_t k = 0;
  c.visit_params([&](const models::ParamRef& p) { *p.tensor = weights[k++]; });
  fill_all(grads, -0.2f);
  opt_a.step(exec, a, grads, 1e-2);
  opt_c.step(exec, c, grads, 1e-2);
  for (const char* name : {"backbone.layers.0.mixer.in_proj.weight", "backbone.layers.0.mixer.A_log"})
    EXPECT_EQ(first(a, name), first(c, name)) << name;
  std::remove(path.c_str());
}

// ZeRO-1's pieces: three optimizers over ranges that split the flat parameters (the cuts fall
// inside parameters) update exactly what one full optimizer does, with gradients given flat, and
// their moments laid end to end save the full optimizer's file, which loads back into each range.
TEST(AdamW, ShardedRangesMatchTheFullOptimizer) {
  models::Model full = tiny_model(), sharded = tiny_model();
  models::Model grads = full.new_grads();
  const FlatLayout layout = FlatLayout::of(full);
  ASSERT_GT(layout.total, 30);
  std::vector<float> flat_grad(static_cast<size_t>(layout.total));
  for (size_t i = 0; i < flat_grad.size(); ++i)
    flat_grad[i] = 0.01f * static_cast<float>(static_cast<int>(i % 13) - 6);
  size_t k = 0;
  grads.visit_params([&](const models::ParamRef& p) {
    for (int64_t i = 0; i < p.tensor->numel(); ++i) p.tensor->f32()[i] = flat_grad[k++];
  });
  const AdamWOptions o{.weight_decay = 0.1};
  AdamW whole(full, o);
  const int64_t cap = (layout.total + 2) / 3;
  std::vector<AdamW> parts;
  for (int r = 0; r < 3; ++r)
    parts.emplace_back(sharded, o, std::min(layout.total, r * cap), std::min(layout.total, (r + 1) * cap),
                       cap);
  const Tensor g = Tensor::from_vector(flat_grad, {layout.total});
  for (int t = 0; t < 2; ++t) {
    whole.step(exec, full, grads, 0.01);
    for (AdamW& part : parts) part.step_flat(exec, sharded, g.slice(0, part.begin(), part.end()), 0.01);
  }
  std::vector<float> a, b;
  full.visit_params([&](const models::ParamRef& p) {
    for (float v : p.tensor->to_vector()) a.push_back(v);
  });
  sharded.visit_params([&](const models::ParamRef& p) {
    for (float v : p.tensor->to_vector()) b.push_back(v);
  });
  ASSERT_EQ(a, b);  // the same arithmetic per element: bit-equal
  // The shards' moments end to end (each padded to `cap`) are the full optimizer's.
  Tensor m = Tensor::zeros({3 * cap}), v = Tensor::zeros({3 * cap});
  for (int r = 0; r < 3; ++r) {
    m.slice(0, r * cap, (r + 1) * cap).copy_from(parts[static_cast<size_t>(r)].flat_m());
    v.slice(0, r * cap, (r + 1) * cap).copy_from(parts[static_cast<size_t>(r)].flat_v());
  }
  const std::string dir = ::testing::TempDir();
  whole.save(dir + "/adamw_whole.safetensors");
  parts[1].save_full(dir + "/adamw_gathered.safetensors", {}, m, v);
  EXPECT_EQ(read_file(dir + "/adamw_whole.safetensors"), read_file(dir + "/adamw_gathered.safetensors"));
  AdamW reloaded(sharded, o, parts[2].begin(), parts[2].end(), cap);
  reloaded.load(dir + "/adamw_whole.safetensors");
  EXPECT_EQ(reloaded.steps(), 2);
  EXPECT_EQ(reloaded.flat_m().to_vector(), parts[2].flat_m().to_vector());
  EXPECT_EQ(reloaded.flat_v().to_vector(), parts[2].flat_v().to_vector());
}

}  // namespace
}  // namespace mamba::train
