// What the `mambacpp` commands report (issue 17): `info` on a model folder and on a training
// checkpoint ROOT, with every dimension of its mixers and the stored weight dtype; the one-line
// summaries of `logits` and `grads`; tokens/s per `chat` turn; `--tokenizer byte` (and a model
// trained on --task text using it by default) for generate, chat and tokenize. Models are
// generated here (random weights, or two training steps), so no fixtures are needed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "core/file_util.h"
#include "io/npy.h"
#include "models/mamba3.h"
#include "models/model.h"
#include "testing.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

using Result = testing::CliResult;

Result run(const std::string& args, const std::string& input = "") {
  return testing::run_cli(MAMBACPP_CLI, args, input);
}

using testing::count_lines;

void expect_has(const Result& r, const std::string& what) {
  EXPECT_NE(r.output.find(what), std::string::npos) << "expected '" << what << "' in:\n" << r.output;
}

class CliReport : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    root_ = new std::string(testing::fresh_temp_dir("mambacpp_cli_report"));
    models::ModelConfig c;
    c.d_model = 16;
    c.n_layer = 2;
    c.vocab_size = 300;
    c.ssm_layer = models::MixerKind::mamba3;
    auto& m3 = c.section<models::Mamba3Config>();
    m3.d_state = 8;
    m3.head_dim = 8;
    m3.is_mimo = true;
    m3.mimo_rank = 2;
    m3.chunk_size = 4;
    models::finalize_model_config(c, "test");
    models::Model::random(c, 1).save(model());
    Tensor ids = Tensor::empty({1, 5}, DType::i64);
    for (int64_t i = 0; i < 5; ++i) ids.data<int64_t>()[i] = 65 + i;
    io::write_npy(ids_path(), ids);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  static std::string model() { return *root_ + "/model"; }
  static std::string ids_path() { return *root_ + "/ids.npy"; }
  static std::string out(const std::string& name) { return *root_ + "/" + name; }

  static std::string* root_;
};
std::string* CliReport::root_ = nullptr;

TEST_F(CliReport, InfoPrintsEveryDimension) {
  const Result r = run("info -m " + model());
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r, "layers:       Mamba3 Mamba3\n");
  expect_has(r, "mamba3:       d_state 8, head_dim 8, heads 4, n_groups 1, expand 2 (d_inner 32)");
  expect_has(r, "MIMO rank 2");
  expect_has(r, "weights:      F32 (");
  expect_has(r, "state bytes:");
}

// A family's dimensions come from its config.json (fixtures: skipped without them).
TEST_F(CliReport, InfoPrintsAFamilysDimensions) {
  MAMBA_REQUIRE_FIXTURES(fx);
  const std::string dir = fx + "/families/nemotron-h";
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  const Result r = run("info -m " + dir);
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r, "layers:       ");
  expect_has(r, "mamba:        d_state ");
  expect_has(r, ", head_dim ");
  expect_has(r, ", n_groups ");
  expect_has(r, "attention:    heads ");
  expect_has(r, "weights:      ");
}

TEST_F(CliReport, LogitsAndGradsPrintOneLineSummaries) {
  Result r = run("logits -m " + model() + " -i " + ids_path() + " -o " + out("l.npy") + " -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("logits: 1 x 5 tokens (whole-sequence pass)", 0), 0u) << r.err;
  expect_has(r, "[1, 5, 304] float32");
  r = run("logits -m " + model() + " -i " + ids_path() + " -o " + out("l.npy") + " --prefill 2 -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r, "(prefill 2 + 3 steps)");
  r = run("grads -m " + model() + " -i " + ids_path() + " -o " + out("g.safetensors") + " -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.out.rfind("loss ", 0), 0u) << r.out;
  EXPECT_EQ(count_lines(r.out), 1u) << r.out;
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("grads: 1 x 5 tokens, loss ", 0), 0u) << r.err;
}

TEST_F(CliReport, ByteTokenizer) {
  Result r = run("tokenize --tokenizer byte --text AB");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.out, "65 66\n");
  r = run("tokenize --decode --tokenizer byte --text '72 105'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.out, "Hi\n");
  // An id the tokenizer does not have is an error, not dropped.
  r = run("tokenize --decode --tokenizer byte --text '72 300 105'");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << r.output;
  EXPECT_EQ(count_lines(r.output), 1u) << r.output;
  expect_has(r, "300");
  expect_has(r, "--decode --text");
  // Text generation with the byte tokenizer on a model of a larger vocabulary.
  r = run("generate -m " + model() + " --tokenizer byte -p Hi -n 3 --temp 0 --ignore-eos -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');  // the text ends its line before the summary
  expect_has(r, "prompt: 2 tokens");
  // chat: tokens/s after each turn.
  r = run("chat -m " + model() + " --tokenizer byte -n 4 --temp 0 -t 1", "hello\nagain\n");
  ASSERT_EQ(r.status, 0) << r.output;
  size_t turns = 0;
  for (size_t at = r.err.find(" tok/s"); at != std::string::npos; at = r.err.find(" tok/s", at + 1)) ++turns;
  EXPECT_EQ(turns, 2u) << r.err;
}

TEST_F(CliReport, TextCheckpointRoot) {
  const std::string text = out("text.txt"), ckpt = out("ckpt");
  std::string body;
  for (int i = 0; i < 40; ++i) body += "The quick brown fox jumps over the lazy dog. ";
  write_file_atomic(text, body);
  Result r =
      run("train --task text --text " + text +
          " --layer Mamba2 --d-model 16 --headdim 16 --d-state 16 --batch 2 --length 16 --eval-batches 1 "
          "-t 1 --steps 2 --checkpoint-dir " +
          ckpt);
  ASSERT_EQ(r.status, 0) << r.output;
  // info takes the checkpoint ROOT, as eval does.
  r = run("info -m " + ckpt);
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r, "step_00000002");
  expect_has(r, "layers:       Mamba2\n");
  expect_has(r, "mamba2:       d_state 16, head_dim 16, heads 2, n_groups 1, expand 2 (d_inner 32)");
  // generate and tokenize read text through the byte tokenizer the task implies.
  r = run("generate -m " + ckpt + " -p 'The quick' -n 4 --temp 0 -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r, "prompt: 9 tokens");
  r = run("tokenize -m " + ckpt + " --text fox");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.out, "102 111 120\n");
}

// A fixture-sized tokenizer/model pair made here: a byte-level Mamba-3 trained on a periodic text
// learns it, and generate / chat take text with the byte tokenizer its config.json records (no
// flag, no trainer.json needed), as the demo's model does.
TEST_F(CliReport, ByteModelTrainedHereTakesText) {
  const std::string text = out("abc.txt"), ckpt = out("abc");
  std::string body;
  for (int i = 0; i < 200; ++i) body += "abcdefgh ";
  write_file_atomic(text, body);
  Result r = run("train --task text --text " + text +
                 " --layer Mamba3 --d-model 32 --headdim 16 --d-state 16 --n-layer 1 --batch 8 --length 24"
                 " --steps 120 --lr 1e-2 --eval-batches 1 --seed 3 -t 1 --checkpoint-dir " +
                 ckpt + " --log " + out("abc.csv") + " --plot " + out("abc.png"));
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string step = ckpt + "/step_00000120";
  EXPECT_NE(read_file(step + "/config.json").find("\"tokenizer\": \"byte\""), std::string::npos);
  EXPECT_EQ(read_file(out("abc.png")).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // The model folder alone (config.json + weights, as a user would copy it).
  const std::string copy = out("abc_model");
  fs::create_directories(copy);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(step + "/" + f, copy + "/" + f);
  r = run("info -m " + copy);
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r, "tokenizer:    byte");
  // Greedy decoding continues the period it learned.
  r = run("generate -m " + copy + " -p 'abcdefgh abcd' -n 14 --temp 0 -t 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.out, "efgh abcdefgh \n") << r.output;
  r = run("chat -m " + copy + " -n 6 --temp 0 -t 1", "abcdefgh abc\n");
  ASSERT_EQ(r.status, 0) << r.output;
  expect_has(r, "tok/s");
  EXPECT_EQ(count_lines(r.out), 1u) << r.out;
  // A config.json naming a tokenizer other than "byte" is refused, naming the file and the value.
  std::string config = read_file(copy + "/config.json");
  config.replace(config.find("\"byte\""), 6, "\"gpt2\"");
  write_file_atomic(copy + "/config.json", config);
  r = run("generate -m " + copy + " -p abc -n 2");
  EXPECT_EQ(r.status, 1) << r.output;
  expect_has(r, copy + "/config.json: tokenizer: expected \"byte\", found 'gpt2'");
}

}  // namespace
}  // namespace mamba
