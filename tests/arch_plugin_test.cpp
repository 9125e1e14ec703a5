// Issue 10: an architecture is one file. This file is a whole (toy) architecture defined outside
// src/models — its schema, derived dimensions, validation, JSON writer, parameter with its
// initialisation rule, mixer and bench shapes — added with register_architecture alone, as a
// user's program would add its own mixer; then config.json parsing, the JSON round trip, the
// loader, a forward pass and `mambacpp bench`'s model list all take it without any other edit.
//
// The toy: "Scale", y = gain · w ⊙ u per channel (w: [d_model], initialised to 0.5), on the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/architectures.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

using models::ModelConfig;

// ---------------- The architecture (what a user's file holds) ----------------

struct ScaleConfig {
  double gain = 1.0;
  int64_t width = 0;  // derived: d_model
};

class ScaleMixer final : public models::Mixer {
public:
  ScaleMixer(const ModelConfig& c, int64_t)
      : c_(c.section<ScaleConfig>()), kind_(c.ssm_layer), d_model_(c.d_model) {}

  models::MixerKind kind() const override { return kind_; }
  void visit_params(const models::ParamVisitor& fn) override {
    fn({"mixer.weight", &weight, {c_.width}, true, models::Init::constant(0.5f)});
  }
  models::LayerState new_state(int64_t) const override { return {}; }
  Tensor forward(ops::Exec&, const Tensor& u, models::LayerState&, int64_t) const override {
    return scaled(u, weight);
  }
  Tensor forward_train(ops::Exec&, const Tensor& u,
                       std::unique_ptr<models::MixerSaved>& saved) const override {
    models::saved_as<Saved>(saved).u = u.contiguous();
    return scaled(u, weight);
  }
  Tensor backward(ops::Exec&, const Tensor& dout, const models::MixerSaved& saved,
                  models::Mixer& grads) const override {
    const Tensor& u = static_cast<const Saved&>(saved).u;
    const Tensor dy = dout.contiguous();
    Tensor& dw = static_cast<ScaleMixer&>(grads).weight;
    const int64_t rows = u.numel() / d_model_;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < d_model_; ++i)
        dw.data<float>()[i] += static_cast<float>(c_.gain) * u.data<float>()[r * d_model_ + i] *
                               dy.data<float>()[r * d_model_ + i];
    return scaled(dy, weight);
  }
  int64_t state_bytes_fixed() const override { return 0; }

  Tensor weight;

private:
  struct Saved : models::MixerSaved {
    Tensor u;
  };
  Tensor scaled(const Tensor& x, const Tensor& w) const {
    const Tensor in = x.contiguous();
    Tensor out = Tensor::empty(in.shape());
    for (int64_t j = 0; j < in.numel(); ++j)
      out.data<float>()[j] =
          static_cast<float>(c_.gain) * w.data<float>()[j % d_model_] * in.data<float>()[j];
    return out;
  }

  ScaleConfig c_;
  models::MixerKind kind_;
  int64_t d_model_;
};

void scale_parse(const io::Reader& r, ModelConfig& c) {
  c.section<ScaleConfig>().gain = r.number("gain", 1.0);
}
void scale_finalize(ModelConfig& c, const std::string& src) {
  ScaleConfig& s = c.section<ScaleConfig>();
  if (!(s.gain > 0)) throw_error(ErrorCode::parse, src, ": field 'ssm_cfg.gain' must be positive");
  s.width = c.d_model;
}
nlohmann::json scale_to_json(const ModelConfig& c) {
  return {{"layer", "Scale"}, {"gain", c.section<ScaleConfig>().gain}};
}
std::unique_ptr<models::Mixer> scale_make(const ModelConfig& c, int64_t layer) {
  return std::make_unique<ScaleMixer>(c, layer);
}
void scale_bench(const std::string&, ModelConfig& c) {
  c.section<ScaleConfig>().gain = 2.0;
}

const models::ArchSpec scale_arch = {.name = "Scale",
                                     .section = "ssm_cfg",
                                     .parse = scale_parse,
                                     .finalize = scale_finalize,
                                     .to_json = scale_to_json,
                                     .make_mixer = scale_make,
                                     .bench_names = {"scale-toy"},
                                     .bench_shapes = scale_bench};

// Registered once per process (gtest may repeat or filter tests).
models::MixerKind scale_kind() {
  static const models::MixerKind kind = models::register_architecture(scale_arch);
  return kind;
}

// ---------------- The proof ----------------

const char* kConfig = R"({"d_model": 4, "n_layer": 2, "vocab_size": 8, "pad_vocab_size_multiple": 8,
                          "ssm_cfg": {"layer": "Scale", "gain": 3.0}, "rms_norm": true})";

TEST(ArchPlugin, GetsAKindOfItsOwnAndKeepsTheBuiltInsOrder) {
  const models::MixerKind kind = scale_kind();
  EXPECT_GE(kind.id(), models::MixerKind::first_free_id);
  EXPECT_EQ(models::kind_of(scale_arch), kind);
  EXPECT_EQ(&models::arch_spec(kind), &scale_arch);
  EXPECT_STREQ(models::mixer_kind_name(kind), "Scale");
  EXPECT_EQ(models::kind_of(*models::architectures()[0]), models::MixerKind::mamba1);
  EXPECT_EQ(models::kind_of(*models::architectures()[3]), models::MixerKind::attention);
  // Today's bench list first, then the new architecture's.
  const std::vector<std::string> expected = {"mamba1",      "mamba2", "mamba3-siso",
                                             "mamba3-mimo", "hybrid", "scale-toy"};
  EXPECT_EQ(models::bench_model_names(), expected);
  ModelConfig bench;
  ASSERT_TRUE(models::bench_model_config("scale-toy", 64, 2, 0, bench));
  EXPECT_EQ(bench.ssm_layer, kind);
  EXPECT_EQ(bench.section<ScaleConfig>().gain, 2.0);
  EXPECT_EQ(bench.section<ScaleConfig>().width, 64);
}

TEST(ArchPlugin, RefusesATakenNameOrAMissingHook) {
  scale_kind();
  EXPECT_THROW(models::register_architecture(scale_arch), Error);
  models::ArchSpec again = scale_arch;  // another object, same name and section
  EXPECT_THROW(models::register_architecture(again), Error);
  models::ArchSpec incomplete = scale_arch;
  incomplete.name = "ScaleWithoutMixer";
  incomplete.make_mixer = nullptr;
  EXPECT_THROW(models::register_architecture(incomplete), Error);
}

TEST(ArchPlugin, ParsesValidatesAndRoundTripsItsSection) {
  scale_kind();
  const ModelConfig c = models::parse_model_config(nlohmann::json::parse(kConfig), "toy/config.json");
  EXPECT_EQ(c.ssm_layer, scale_kind());
  EXPECT_EQ(c.layer_kind(1), scale_kind());
  EXPECT_EQ(c.section<ScaleConfig>().gain, 3.0);
  EXPECT_EQ(c.section<ScaleConfig>().width, 4);
  const nlohmann::json written = models::to_mamba_ssm_json(c);
  EXPECT_EQ(written["ssm_cfg"], nlohmann::json::parse(R"({"layer": "Scale", "gain": 3.0})"));
  const ModelConfig again = models::parse_model_config(written, "written");
  EXPECT_EQ(models::to_mamba_ssm_json(again), written);

  nlohmann::json bad = nlohmann::json::parse(kConfig);
  bad["ssm_cfg"]["gain"] = -1;
  try {
    models::parse_model_config(bad, "toy/config.json");
    ADD_FAILURE() << "a negative gain was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "toy/config.json: field 'ssm_cfg.gain' must be positive");
  }
  bad["ssm_cfg"]["layer"] = "Nope";
  try {
    models::parse_model_config(bad, "toy/config.json");
    ADD_FAILURE() << "an unknown layer was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected Mamba1, Mamba2, Mamba3 or Scale, found 'Nope'"),
              std::string::npos)
        << e.what();
  }
}

// Through the normal loader: a random model (the init rule), saved and loaded back from its
// directory, and its logits against the pre-norm residual network computed by hand.
TEST(ArchPlugin, LoadsAndRunsAForwardPassComputedByHand) {
  scale_kind();
  const ModelConfig config = models::parse_model_config(nlohmann::json::parse(kConfig), "toy");
  models::Model random = models::Model::random(config, 3);
  std::vector<float> w_values = {0.5f, -1.0f, 2.0f, 0.25f};
  int n_weights = 0;
  random.visit_params([&](const models::ParamRef& p) {
    if (!p.name.ends_with("mixer.weight")) return;
    for (float v : p.tensor->to_vector()) EXPECT_EQ(v, 0.5f) << p.name;  // Init::constant(0.5)
    *p.tensor = Tensor::from_vector(w_values, {4});
    for (float& v : w_values) v += 0.125f;  // the second layer's differ
    ++n_weights;
  });
  EXPECT_EQ(n_weights, 2);
  const std::string dir = testing::fresh_temp_dir("arch_plugin");
  random.save(dir);
  const models::Model model = models::Model::load(dir);
  ASSERT_EQ(model.config().ssm_layer, scale_kind());

  // Parameters by name, read back from the loaded model.
  std::map<std::string, std::vector<float>> p;
  const_cast<models::Model&>(model).visit_params(
      [&](const models::ParamRef& r) { p[r.name] = r.tensor->to_vector(); });
  const std::vector<float>& emb = p.at(config.embedding_name());
  const double eps = config.norm_eps;
  auto rms = [&](const std::vector<double>& x, const std::vector<float>& w) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * inv * w[i];
    return out;
  };
  const std::vector<int64_t> ids = {5, 1, 7};
  std::vector<float> expected;
  for (int64_t id : ids) {
    std::vector<double> residual(emb.begin() + id * 4, emb.begin() + id * 4 + 4);
    for (int layer = 0; layer < 2; ++layer) {
      const std::string prefix = "backbone.layers." + std::to_string(layer) + ".";
      const std::vector<double> h = rms(residual, p.at(prefix + "norm.weight"));
      const std::vector<float>& w = p.at(prefix + "mixer.weight");
      for (int i = 0; i < 4; ++i) residual[i] += 3.0 * w[i] * h[i];
    }
    const std::vector<double> out = rms(residual, p.at("backbone.norm_f.weight"));
    for (int v = 0; v < 8; ++v) {
      double dot = 0;
      for (int i = 0; i < 4; ++i) dot += out[i] * emb[v * 4 + i];
      expected.push_back(static_cast<float>(dot));
    }
  }
  ops::Exec exec;
  models::State state = model.new_state(1);
  Tensor tokens = Tensor::empty({1, 3}, DType::i64);
  for (size_t t = 0; t < ids.size(); ++t) tokens.data<int64_t>()[t] = ids[t];
  const Tensor logits = model.forward(exec, tokens, state);
  ASSERT_EQ(logits.shape(), (Shape{1, 3, 8}));
  EXPECT_LT(testing::max_abs_diff(logits.to_vector(), expected), 1e-5f);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mamba
