// The model-family fixtures (../shared/fixtures/families/, written by HF transformers 5.17) shared
// by the CPU and CUDA family tests: their list, the K values of the prefill checks, and the
// gradient comparison against grads.safetensors, whose keys are transformers' in-memory parameter
// names (stacked experts "experts.gate_up_proj" [E, 2I, D], Nemotron-H's "model." prefix, Granite's
// "router.weight"), mapped here from the checkpoint names our gradients carry.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "testing.h"

namespace mamba::testing {

inline const char* const kFamilyFixtures[] = {"falcon-mamba", "mamba2-grouped", "jamba", "zamba2",
                                              "nemotron-h",   "granite-4-h",    "bamba", "falcon-h1"};

// gtest parameter name of a family fixture ("nemotron-h" -> "nemotron_h").
inline std::string family_param_name(const ::testing::TestParamInfo<const char*>& p) {
  std::string s = p.param;
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

// Our gradients (checkpoint names) under the reference's names: per-expert matrices stacked,
// [gate; up] concatenated per expert, prefixes renamed.
// `backbone_to_model`: the reference names "backbone.X" as "model.X" (Nemotron-H in transformers 5).
inline std::map<std::string, Tensor> to_reference_names(const std::map<std::string, Tensor>& grads,
                                                        bool backbone_to_model) {
  std::map<std::string, Tensor> out;
  std::map<std::string, std::map<int, std::map<std::string, Tensor>>> experts;  // stem -> e -> part -> grad
  const std::regex expert(R"((.*\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight)");
  for (const auto& [name, g] : grads) {
    std::string n = name;
    if (backbone_to_model && n.rfind("backbone.", 0) == 0) n = "model." + n.substr(9);
    std::smatch m;
    if (std::regex_match(n, m, expert)) {
      experts[m[1]][std::stoi(m[2])][m[3]] = g.to(Device::cpu).contiguous();
      continue;
    }
    n = std::regex_replace(n, std::regex(R"(block_sparse_moe\.router\.layer\.weight$)"),
                           "block_sparse_moe.router.weight");
    n = std::regex_replace(n, std::regex(R"(block_sparse_moe\.input_linear\.weight$)"),
                           "block_sparse_moe.experts.gate_up_proj");
    n = std::regex_replace(n, std::regex(R"(block_sparse_moe\.output_linear\.weight$)"),
                           "block_sparse_moe.experts.down_proj");
    out[n] = g;
  }
  for (auto& [stem, by_expert] : experts) {
    const bool gated = by_expert.begin()->second.count("gate_proj") > 0;
    std::vector<float> in, down;
    Shape in_shape, down_shape;
    for (auto& [e, parts] : by_expert) {
      for (const char* part : {"gate_proj", "up_proj"}) {
        if (!parts.count(part)) continue;
        const std::vector<float> v = parts[part].to_vector();
        in.insert(in.end(), v.begin(), v.end());
      }
      const std::vector<float> d = parts["down_proj"].to_vector();
      down.insert(down.end(), d.begin(), d.end());
      in_shape = {static_cast<int64_t>(by_expert.size()), (gated ? 2 : 1) * parts["up_proj"].size(0),
                  parts["up_proj"].size(1)};
      down_shape = {static_cast<int64_t>(by_expert.size()), parts["down_proj"].size(0),
                    parts["down_proj"].size(1)};
    }
    out[stem + (gated ? ".gate_up_proj" : ".up_proj")] = Tensor::from_vector(in, in_shape);
    out[stem + ".down_proj"] = Tensor::from_vector(down, down_shape);
  }
  return out;
}

// Every tensor of grads.safetensors: max |g − ref| ≤ 1e-3·max |ref| + atol, where atol = 1e-6 for
// the references computed in float32 (the MoE families: their own summation noise, ~1e-7 on
// gradients of ~1e-5, exceeds 1e-3 relative on the smallest tensors) and 0 for float64 ones.
// A gradient we have that the reference lacks (a buffer such as e_score_correction_bias) must be 0.
inline void expect_family_grads_match(const std::map<std::string, Tensor>& ours_by_checkpoint_name,
                                      const std::string& dir, const std::string& what) {
  const io::SafeTensors ref = io::SafeTensors::open(path_join(dir, "grads.safetensors"));
  const std::map<std::string, Tensor> ours =
      to_reference_names(ours_by_checkpoint_name, ref.contains("model.embeddings.weight"));
  const std::string reference =
      nlohmann::json::parse(read_file(path_join(dir, "meta.json"))).value("reference", "");
  const float atol = reference.find("float32") != std::string::npos ? 1e-6f : 0.0f;
  float worst = 0.0f;
  std::string worst_name;
  for (const std::string& name : ref.names()) {
    const auto it = ours.find(name);
    if (it == ours.end()) {
      ADD_FAILURE() << what << ": no gradient for " << name;
      continue;
    }
    const Tensor r = ref.get_f32(name);
    ASSERT_EQ(it->second.numel(), r.numel()) << what << ": " << name;
    const std::vector<float> g = it->second.to(Device::cpu).contiguous().to_vector(), rv = r.to_vector();
    float scale = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < rv.size(); ++i) {
      scale = std::max(scale, std::fabs(rv[i]));
      diff = std::max(diff, std::fabs(g[i] - rv[i]));
    }
    EXPECT_LE(diff, 1e-3f * scale + atol)
        << what << ": " << name << " max|diff| " << diff << " max|ref| " << scale;
    const float rel = diff / std::max(scale, 1e-30f);
    if (rel > worst) {
      worst = rel;
      worst_name = name;
    }
  }
  for (const auto& [name, g] : ours)
    if (!ref.contains(name)) {
      const std::vector<float> v = g.to(Device::cpu).contiguous().to_vector();
      const float m =
          v.empty() ? 0.0f : std::fabs(*std::max_element(v.begin(), v.end(), [](float a, float b) {
            return std::fabs(a) < std::fabs(b);
          }));
      EXPECT_EQ(m, 0.0f) << what << ": gradient " << name << " is not in the reference but non-zero";
    }
  std::printf("[ %s ] %s: worst max|diff|/max|ref| %.3g (%s)\n", dir.c_str(), what.c_str(), worst,
              worst_name.c_str());
}

}  // namespace mamba::testing
