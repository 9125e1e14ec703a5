// The model families (issue 11) against HF transformers' own numbers: logits of every family
// fixture within 1e-4 for the whole sequence and for a prefill of K ∈ {1, L/2, L−1} tokens
// followed by one-token steps, through the library and `mambacpp logits`; loss and gradients
// (tests/support/family_fixtures.h); sessions and state files of hybrid models (SSM states +
// KV caches); `info`; and bad configs refused with one line naming the key.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "exec_testing.h"
#include "family_fixtures.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "runtime/state_io.h"
#include "testing.h"

namespace mamba {
namespace {

constexpr float kTolerance = 1e-4f;

class Family : public ::testing::TestWithParam<const char*> {};

TEST_P(Family, LogitsWholeSequenceAndPrefillThenSteps) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("families/") + GetParam());
  const models::Model model = models::Model::load(dir);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t batch = ids.size(0), L = ids.size(1);
  ASSERT_EQ(ref.shape(), (Shape{batch, L, model.config().vocab_padded}));
  models::State state = model.new_state(batch);
  const float whole = testing::max_abs_diff(model.forward(exec, ids, state), ref);
  EXPECT_LT(whole, kTolerance) << "whole sequence";
  float worst = 0.0f;
  for (int64_t k : {int64_t(1), L / 2, L - 1}) {
    models::State st = model.new_state(batch);
    const Tensor pre = model.forward(exec, ids.slice(1, 0, k), st);
    EXPECT_LT(testing::max_abs_diff(pre, ref.slice(1, 0, k).contiguous()), kTolerance) << "prefill K=" << k;
    for (int64_t t = k; t < L; ++t) {
      const float d = testing::max_abs_diff(model.step(exec, ids.select(1, t).contiguous(), st),
                                            ref.select(1, t).contiguous());
      EXPECT_LT(d, kTolerance) << "step " << t << " after prefill K=" << k;
      worst = std::max(worst, d);
    }
    EXPECT_EQ(st.position, L);
  }
  std::printf("[ family ] %-15s whole %.3g  steps %.3g\n", GetParam(), whole, worst);
}

TEST_P(Family, ThroughCli) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("families/") + GetParam());
  const Tensor ref = io::read_npy(path_join(dir, "logits.npy"));
  const int64_t L = ref.size(1);
  for (int64_t k : {int64_t(-1), int64_t(1), L / 2, L - 1}) {
    const std::string out = ::testing::TempDir() + "/family_" + GetParam() + ".npy";
    std::string cmd = std::string(MAMBACPP_CLI) + " logits --model " + dir + " --input " + dir +
                      "/input_ids.npy --output " + out + " --threads 2";
    if (k >= 0) cmd += " --prefill " + std::to_string(k);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_LT(testing::max_abs_diff(io::read_npy(out), ref), kTolerance) << cmd;
  }
  const std::string info = ::testing::TempDir() + "/family_info.txt";
  ASSERT_EQ(std::system((std::string(MAMBACPP_CLI) + " info --model " + dir + " > " + info).c_str()), 0);
  // The layer pattern: each layer's mixers and FFN.
  const std::map<std::string, std::string> expected = {{"falcon-mamba", "layers:       Mamba1 Mamba1"},
                                                       {"mamba2-grouped", "layers:       Mamba2 Mamba2"},
                                                       {"jamba", "Mamba1+MLP Mamba1+MoE Attn(NoPE)+MLP"},
                                                       {"zamba2", "Mamba2 Hybrid Mamba2"},
                                                       {"nemotron-h", "Mamba2 MLP Mamba2 Attn(NoPE) MoE"},
                                                       {"granite-4-h", "Mamba2+MoE Attn(NoPE)+MoE"},
                                                       {"bamba", "Mamba2+MLP Attn(RoPE)+MLP"},
                                                       {"falcon-h1", "Mamba2|Attn(RoPE)+MLP"}};
  EXPECT_NE(read_file(info).find(expected.at(GetParam())), std::string::npos) << read_file(info);
}

TEST_P(Family, LossAndGradients) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("families/") + GetParam());
  if (!file_exists(path_join(dir, "grads.safetensors"))) GTEST_SKIP() << "no reference gradients";
  const models::Model model = models::Model::load(dir);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  models::Model grads = model.new_grads();
  models::Activations acts;
  const double loss = model.loss_and_grads(exec, ids, models::next_token_targets(ids), grads, acts);
  const double ref_loss =
      nlohmann::json::parse(read_file(path_join(dir, "loss.json"))).at("loss").get<double>();
  EXPECT_NEAR(loss, ref_loss, 1e-5);
  std::map<std::string, Tensor> named;
  grads.visit_params([&](const models::ParamRef& p) { named[p.name] = *p.tensor; });
  testing::expect_family_grads_match(named, dir, "library");
}

// A hybrid state (SSM + conv states and KV caches) saved after a prefill and loaded into a fresh
// state continues exactly.
TEST_P(Family, StateFileRoundTrip) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("families/") + GetParam());
  const models::Model model = models::Model::load(dir);
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy")).slice(0, 0, 1).contiguous();
  const int64_t L = ids.size(1), k = L / 2;
  models::State st = model.new_state(1);
  model.forward(exec, ids.slice(1, 0, k), st);
  const std::string path = ::testing::TempDir() + "/family_" + GetParam() + ".state";
  const runtime::Fingerprint fp = runtime::fingerprint(model);
  runtime::SessionState saved;
  saved.state = st.copy();
  runtime::save_state(path, model, fp, saved);
  models::State loaded = runtime::load_state(path, model, fp).state;
  EXPECT_EQ(loaded.position, k);
  for (int64_t t = k; t < L; ++t) {
    const Tensor a = model.step(exec, ids.select(1, t).contiguous(), st);
    const Tensor b = model.step(exec, ids.select(1, t).contiguous(), loaded);
    ASSERT_EQ(testing::max_abs_diff(a, b), 0.0f) << "step " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Family, ::testing::ValuesIn(testing::kFamilyFixtures),
                         testing::family_param_name);

// ---- Bad configs: one line naming the file and the key, never a crash. ----

// Copies a family fixture with config.json edited by `edit`; returns the directory.
std::string edited_copy(const std::string& root, const char* family, const std::string& tag,
                        const std::function<void(nlohmann::json&)>& edit) {
  const std::string src = path_join(root, std::string("families/") + family);
  const std::string dst = ::testing::TempDir() + "/bad_" + family + "_" + tag;
  std::filesystem::create_directories(dst);
  std::filesystem::copy_file(path_join(src, "model.safetensors"), path_join(dst, "model.safetensors"),
                             std::filesystem::copy_options::overwrite_existing);
  nlohmann::json j = nlohmann::json::parse(read_file(path_join(src, "config.json")));
  edit(j);
  std::ofstream(path_join(dst, "config.json")) << j.dump();
  return dst;
}

void expect_load_error(const std::string& dir, const std::string& needle) {
  try {
    models::Model::load(dir);
    ADD_FAILURE() << dir << ": loaded, expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(FamilyBadConfig, RefusedWithTheKey) {
  MAMBA_REQUIRE_FIXTURES(root);
  expect_load_error(edited_copy(root, "nemotron-h", "kind",
                                [](nlohmann::json& j) { j["layers_block_type"][2] = "transformer"; }),
                    "layers_block_type[2]");
  expect_load_error(
      edited_copy(root, "nemotron-h", "len", [](nlohmann::json& j) { j["num_hidden_layers"] = 9; }),
      "layers_block_type");
  expect_load_error(edited_copy(root, "nemotron-h", "pattern",
                                [](nlohmann::json& j) {
                                  j.erase("layers_block_type");
                                  j["hybrid_override_pattern"] = "M-M*EQ-";
                                }),
                    "hybrid_override_pattern");
  expect_load_error(
      edited_copy(root, "bamba", "heads", [](nlohmann::json& j) { j["num_key_value_heads"] = 3; }),
      "num_key_value_heads");
  expect_load_error(edited_copy(root, "granite-4-h", "types",
                                [](nlohmann::json& j) { j["layer_types"].push_back("mamba"); }),
                    "layer_types");
  expect_load_error(
      edited_copy(root, "jamba", "period", [](nlohmann::json& j) { j["attn_layer_offset"] = 7; }),
      "attn_layer_offset");
  expect_load_error(edited_copy(root, "bamba", "type", [](nlohmann::json& j) { j["model_type"] = "bambam"; }),
                    "model_type");
  expect_load_error(edited_copy(root, "bamba", "mamba", [](nlohmann::json& j) { j["mamba_n_heads"] = 7; }),
                    "mamba_n_heads");
  // Absurd sizes: refused by name before anything is allocated (no overflow, no OOM abort).
  expect_load_error(edited_copy(root, "bamba", "layers",
                                [](nlohmann::json& j) { j["num_hidden_layers"] = int64_t(1) << 31; }),
                    "num_hidden_layers");
  expect_load_error(
      edited_copy(root, "jamba", "state", [](nlohmann::json& j) { j["mamba_d_state"] = int64_t(1) << 40; }),
      "mamba_d_state");
  expect_load_error(edited_copy(root, "granite-4-h", "experts",
                                [](nlohmann::json& j) { j["num_local_experts"] = int64_t(1) << 33; }),
                    "num_local_experts");
}

// Nemotron-H's older config spelling (hybrid_override_pattern: M Mamba-2, - MLP, * attention, E MoE)
// builds the same model as layers_block_type.
TEST(FamilyConfig, NemotronHybridOverridePattern) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = edited_copy(root, "nemotron-h", "pattern_ok", [](nlohmann::json& j) {
    j.erase("layers_block_type");
    j.erase("num_hidden_layers");
    j["hybrid_override_pattern"] = "M-M*EM-";
  });
  const std::string src = path_join(root, "families/nemotron-h");
  const models::Model model = models::Model::load(dir);
  const Tensor ids = io::read_npy(path_join(src, "input_ids.npy"));
  models::State st = model.new_state(ids.size(0));
  EXPECT_LT(testing::max_abs_diff(model.forward(exec, ids, st), io::read_npy(path_join(src, "logits.npy"))),
            kTolerance);
}

// `generate` on a hybrid family: greedy ids through the command, continued exactly from a saved state.
TEST(FamilyCli, GenerateAndContinueFromState) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, "families/granite-4-h");
  const std::string tmp = ::testing::TempDir(), state = tmp + "/granite.state";
  const std::string base = std::string(MAMBACPP_CLI) + " generate -m " + dir + " --temp 0 --print-ids";
  auto run = [&](const std::string& args, const std::string& out) {
    const std::string cmd = base + " " + args + " > " + out + " 2>/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return read_file(out);
  };
  const std::string whole = run("--prompt-ids 5,17,42,8 -n 12", tmp + "/g1.txt");
  run("--prompt-ids 5,17,42,8 -n 6 --save-state " + state, tmp + "/g2.txt");
  const std::string first = read_file(tmp + "/g2.txt");
  const std::string rest = run("--load-state " + state + " -n 6", tmp + "/g3.txt");
  EXPECT_FALSE(whole.empty());
  // The 12 greedy ids of one run equal 6 + 6 across two processes.
  auto ids_of = [](const std::string& text) {
    std::vector<std::string> ids;
    std::string cur;
    for (char ch : text) {
      if (ch >= '0' && ch <= '9') {
        cur += ch;
      } else if (!cur.empty()) {
        ids.push_back(cur);
        cur.clear();
      }
    }
    if (!cur.empty()) ids.push_back(cur);
    return ids;
  };
  std::vector<std::string> joined = ids_of(first), tail = ids_of(rest);
  joined.insert(joined.end(), tail.begin(), tail.end());
  EXPECT_EQ(ids_of(whole), joined) << whole << " | " << first << " | " << rest;
}

// Zamba2 with one shared block used by both hybrid layers (num_mem_blocks 1): the checkpoint holds
// the block once, under the first user's names, and both uses' adapters there. It must compute what
// a two-block checkpoint computes whose second block is a copy of the first.
TEST(FamilyConfig, Zamba2SharedBlockAcrossLayers) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string src = path_join(root, "families/zamba2");
  const io::SafeTensors st = io::SafeTensors::open(path_join(src, "model.safetensors"));
  const std::string shared4 = "model.layers.4.shared_transformer.";
  std::vector<std::pair<std::string, Tensor>> one_block, two_copies;
  for (const std::string& name : st.names()) {
    const Tensor t = st.get_f32(name);
    const bool in4 = name.rfind(shared4, 0) == 0, adapter = name.find("adapter_list.") != std::string::npos;
    if (!in4) {
      one_block.emplace_back(name, t);
      two_copies.emplace_back(name, t);
      if (name.rfind("model.layers.1.shared_transformer.", 0) == 0 && !adapter)  // block 1 := block 0
        two_copies.emplace_back(shared4 + name.substr(shared4.size()), t);
    } else if (adapter) {  // use 1's adapters: under layer 1 in the shared layout, kept at layer 4 in the
                           // other
      one_block.emplace_back("model.layers.1.shared_transformer." + name.substr(shared4.size()), t);
      two_copies.emplace_back(name, t);
    }
  }
  const std::string a = ::testing::TempDir() + "/zamba2_one_block",
                    b = ::testing::TempDir() + "/zamba2_two_copies";
  for (const auto& [dir, tensors, blocks] : {std::tuple{a, &one_block, 1}, std::tuple{b, &two_copies, 2}}) {
    std::filesystem::create_directories(dir);
    io::save_safetensors(path_join(dir, "model.safetensors"), *tensors, {{"format", "pt"}});
    nlohmann::json j = nlohmann::json::parse(read_file(path_join(src, "config.json")));
    j["num_mem_blocks"] = blocks;
    std::ofstream(path_join(dir, "config.json")) << j.dump();
  }
  const models::Model shared = models::Model::load(a), copies = models::Model::load(b);
  EXPECT_LT(shared.n_params(), copies.n_params());
  const Tensor ids = io::read_npy(path_join(src, "input_ids.npy"));
  models::State s1 = shared.new_state(ids.size(0)), s2 = copies.new_state(ids.size(0));
  EXPECT_EQ(testing::max_abs_diff(shared.forward(exec, ids, s1), copies.forward(exec, ids, s2)), 0.0f);
}

TEST(FamilyBadConfig, MissingTensorNamed) {
  MAMBA_REQUIRE_FIXTURES(root);
  // Jamba with an expert layer where the checkpoint has a dense MLP: the expert weights are missing.
  const std::string dir =
      edited_copy(root, "jamba", "tensor", [](nlohmann::json& j) { j["expert_layer_offset"] = 0; });
  try {
    models::Model::load(dir);
    ADD_FAILURE() << "loaded a checkpoint without its expert weights";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'model.layers.0.feed_forward"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mamba
