// Bad input never crashes: each malformed file or argument gives exit status 1 and exactly one
// line `error: ...` naming the file and the problem, through the `mambacpp` command. The
// checkpoints are generated here (random weights, saved, then damaged), so no fixtures are needed.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/file_util.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/mamba2.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

using Result = testing::CliResult;

Result run(const std::string& args) {
  return testing::run_cli(MAMBACPP_CLI, args);
}

class BadInput : public ::testing::Test {
protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("mambacpp_bad_input_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    models::ModelConfig c;
    c.d_model = 16;
    c.n_layer = 2;
    c.vocab_size = 50;
    c.ssm_layer = models::MixerKind::mamba2;
    auto& m2 = c.section<models::Mamba2Config>();
    m2.d_state = 8;
    m2.head_dim = 8;
    m2.chunk_size = 4;
    models::finalize_model_config(c, "test");
    good_ = (root_ / "good").string();
    models::Model::random(c, 1).save(good_);
    ids_ = (root_ / "ids.npy").string();
    Tensor ids = Tensor::empty({1, 5}, DType::i64);
    for (int64_t i = 0; i < 5; ++i) ids.data<int64_t>()[i] = i * 3;
    io::write_npy(ids_, ids);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A copy of the good checkpoint to damage.
  std::string copy_model(const std::string& name) {
    const fs::path dir = root_ / name;
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fs::path(good_) / f, dir / f);
    return dir.string();
  }

  // Runs `logits` on `model` and checks: exit 1, one line, starting "error: ", naming `file`
  // and containing `what`.
  void expect_error(const std::string& model, const std::string& ids, const std::string& file,
                    const std::string& what) {
    const Result r =
        run("logits --model " + model + " --input " + ids + " --output " + (root_ / "out.npy").string());
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_NE(r.output.find(file), std::string::npos) << "expected '" << file << "' in: " << r.output;
    EXPECT_NE(r.output.find(what), std::string::npos) << "expected '" << what << "' in: " << r.output;
    EXPECT_FALSE(fs::exists(root_ / "out.npy")) << "no output may be written on error";
  }

  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }
  static std::string slurp(const std::string& path) { return read_file(path); }

  fs::path root_;
  std::string good_, ids_;
};

TEST_F(BadInput, GoodModelRuns) {
  const Result r =
      run("logits --model " + good_ + " --input " + ids_ + " --output " + (root_ / "ok.npy").string());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(io::read_npy((root_ / "ok.npy").string()).shape(), (Shape{1, 5, 56}));
  // `info` on the same checkpoint: kinds, parameter count and state bytes per sequence.
  const Result info = run("info --model " + good_);
  EXPECT_EQ(info.status, 0) << info.output;
  const int64_t n_params = models::Model::load(good_).n_params();
  EXPECT_NE(info.output.find("parameters:   " + std::to_string(n_params)), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("Mamba2 Mamba2"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("state bytes:"), std::string::npos) << info.output;
}

TEST_F(BadInput, TruncatedHeader) {
  const std::string m = copy_model("truncated");
  write(m + "/model.safetensors", "abc");
  expect_error(m, ids_, "model.safetensors", "");
}

TEST_F(BadInput, OversizedHeader) {
  const std::string m = copy_model("oversized");
  std::string bytes = slurp(m + "/model.safetensors");
  const uint64_t huge = 1ull << 40;
  bytes.replace(0, 8, reinterpret_cast<const char*>(&huge), 8);
  write(m + "/model.safetensors", bytes);
  expect_error(m, ids_, "model.safetensors", "header");
}

TEST_F(BadInput, TensorBytesPastEnd) {
  const std::string m = copy_model("short");
  const std::string bytes = slurp(m + "/model.safetensors");
  write(m + "/model.safetensors", bytes.substr(0, bytes.size() - 100));
  expect_error(m, ids_, "model.safetensors", "past the end");
}

TEST_F(BadInput, MissingTensor) {
  const std::string m = copy_model("missing");
  auto st = io::SafeTensors::open(good_);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : st.names())
    if (name != "backbone.layers.1.mixer.A_log") tensors.emplace_back(name, st.get(name));
  io::save_safetensors(m + "/model.safetensors", tensors);
  expect_error(m, ids_, "model.safetensors", "missing tensor 'backbone.layers.1.mixer.A_log'");
}

TEST_F(BadInput, WrongShapeAndDtype) {
  for (bool dtype_case : {false, true}) {
    const std::string m = copy_model(dtype_case ? "dtype" : "shape");
    auto st = io::SafeTensors::open(good_);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& name : st.names()) {
      Tensor t = st.get(name);
      if (name == "backbone.layers.0.mixer.D")
        t = dtype_case ? Tensor::zeros(t.shape(), DType::i64) : Tensor::zeros({t.size(0) + 1});
      tensors.emplace_back(name, t);
    }
    io::save_safetensors(m + "/model.safetensors", tensors);
    expect_error(m, ids_, "model.safetensors", "backbone.layers.0.mixer.D");
  }
}

TEST_F(BadInput, UnknownLayerAndInconsistentDims) {
  const std::string m = copy_model("layer");
  std::string cfg = slurp(m + "/config.json");
  cfg.replace(cfg.find("\"Mamba2\""), 8, "\"Mamba4\"");
  write(m + "/config.json", cfg);
  expect_error(m, ids_, "config.json", "ssm_cfg.layer");

  const std::string m2 = copy_model("dims");
  cfg = slurp(m2 + "/config.json");
  cfg.replace(cfg.find("\"headdim\": 8"), 12, "\"headdim\": 7");
  write(m2 + "/config.json", cfg);
  expect_error(m2, ids_, "config.json", "not divisible by headdim");

  const std::string m3 = copy_model("json");
  write(m3 + "/config.json", "{\"d_model\": 16,");
  expect_error(m3, ids_, "config.json", "not valid JSON");
}

TEST_F(BadInput, MalformedNpyAndOutOfVocabIds) {
  const std::string bad_npy = (root_ / "bad.npy").string();
  write(bad_npy, "\x93NUMPY\x01\x00garbage");
  expect_error(good_, bad_npy, "bad.npy", "");

  const std::string floats = (root_ / "floats.npy").string();
  io::write_npy(floats, Tensor::zeros({1, 3}));
  expect_error(good_, floats, "floats.npy", "int64");

  const std::string oov = (root_ / "oov.npy").string();
  Tensor ids = Tensor::zeros({1, 4}, DType::i64);
  ids.data<int64_t>()[2] = 56;
  io::write_npy(oov, ids);
  expect_error(good_, oov, "oov.npy", "token id 56 at position 2");
}

TEST_F(BadInput, MissingModelDirectory) {
  expect_error((root_ / "nope").string(), ids_, "nope/config.json", "cannot open");
}

}  // namespace
}  // namespace mamba
