// Usage errors of the `mambacpp` command (issue 17): every bad flag value is refused before any
// work with exit status 1 and one line `error: ...` naming the flag, the allowed range and the
// value; unknown flags and commands are named (with the closest known one); output files'
// folders are checked first; no arguments print usage. The model is generated here (random
// weights), so no fixtures are needed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "io/npy.h"
#include "models/mamba2.h"
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

// Exit 1, one line `error: ...` containing every one of `parts`, nothing on stdout.
void expect_usage_error(const std::string& args, const std::vector<std::string>& parts) {
  const Result r = run(args);
  EXPECT_EQ(r.status, 1) << args << ": " << r.output;
  EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << args << ": " << r.output;
  EXPECT_EQ(count_lines(r.output), 1u) << args << ": " << r.output;
  EXPECT_EQ(r.out, "") << args;
  for (const std::string& p : parts)
    EXPECT_NE(r.output.find(p), std::string::npos) << args << ": expected '" << p << "' in: " << r.output;
}

class CliFlags : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    root_ = new std::string(testing::fresh_temp_dir("mambacpp_cli_flags"));
    models::ModelConfig c;
    c.d_model = 16;
    c.n_layer = 2;
    c.vocab_size = 300;
    c.ssm_layer = models::MixerKind::mamba2;
    auto& m2 = c.section<models::Mamba2Config>();
    m2.d_state = 8;
    m2.head_dim = 8;
    m2.chunk_size = 4;
    models::finalize_model_config(c, "test");
    models::Model::random(c, 1).save(model());
    Tensor ids = Tensor::empty({1, 5}, DType::i64);
    for (int64_t i = 0; i < 5; ++i) ids.data<int64_t>()[i] = i * 3;
    io::write_npy(ids_path(), ids);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  static std::string model() { return *root_ + "/model"; }
  static std::string ids_path() { return *root_ + "/ids.npy"; }
  static std::string out(const std::string& name) { return *root_ + "/" + name; }
  // A folder that does not exist (checked: nothing may create it).
  static std::string missing() { return *root_ + "/missing/dir"; }

  static std::string* root_;
};
std::string* CliFlags::root_ = nullptr;

TEST_F(CliFlags, NoArgumentsPrintsUsage) {
  const Result r = run("");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(run("help").out, r.out);
  EXPECT_NE(r.out.find("Usage: mambacpp"), std::string::npos) << r.output;
  for (const char* cmd : {"info", "generate", "bench", "train", "serve"})
    EXPECT_NE(r.out.find(cmd), std::string::npos) << r.output;
}

TEST_F(CliFlags, UnknownFlagsAndCommandsAreNamed) {
  // A misspelt flag is named, not the required flag it hides.
  expect_usage_error("info --modle X", {"mambacpp info", "unknown flag --modle", "did you mean --model?"});
  expect_usage_error("generate -m " + model() + " --prompt-ids 1 --n-predcit 3",
                     {"unknown flag --n-predcit", "--n-predict"});
  expect_usage_error("bench --seqlen=8", {"unknown flag --seqlen", "--seq-len"});
  expect_usage_error("logits --zzzzzzzzz", {"unknown flag --zzzzzzzzz"});
  expect_usage_error("bnech", {"unknown command 'bnech'", "did you mean bench?"});
  // Other parse errors exit 1 too (CLI11's own codes are 100 and up).
  expect_usage_error("info", {"--model", "required"});
  expect_usage_error("info --model", {"--model"});
  expect_usage_error("generate -m " + model() + " -n abc", {"--n-predict", "'abc'"});
  // --help is not an error.
  const Result help = run("generate --help");
  EXPECT_EQ(help.status, 0) << help.output;
  EXPECT_NE(help.out.find("--n-predict"), std::string::npos) << help.output;
}

TEST_F(CliFlags, ThreadsEverywhere) {
  const std::string m = model(), ids = ids_path();
  const std::vector<std::string> commands = {
      "logits -m " + m + " -i " + ids + " -o " + out("l.npy"),
      "grads -m " + m + " -i " + ids + " -o " + out("g.safetensors"),
      "generate -m " + m + " --prompt-ids 1,2",
      "chat -m " + m,
      "serve -m " + m,
      "train --task parity --steps 1",
      "eval -m " + m + " --task parity",
  };
  for (const std::string& cmd : commands)
    for (const char* bad : {"0", "-3", "5000"}) {
      expect_usage_error(cmd + " -t " + bad, {"--threads", "1 to 4096", std::string("'") + bad + "'"});
      expect_usage_error(cmd + " --threads " + bad, {"--threads", "1 to 4096", std::string("'") + bad + "'"});
    }
  expect_usage_error("bench --threads 0", {"--threads", "1 to 4096", "'0'"});
  expect_usage_error("bench --threads 1 -2", {"--threads", "1 to 4096", "'-2'"});
  EXPECT_FALSE(fs::exists(out("l.npy")));
  EXPECT_FALSE(fs::exists(out("g.safetensors")));
}

TEST_F(CliFlags, GenerationFlags) {
  for (const std::string& cmd : {"generate -m " + model() + " --prompt-ids 1,2", "chat -m " + model()}) {
    expect_usage_error(cmd + " -n -5", {"--n-predict", ">= 0", "'-5'"});
    expect_usage_error(cmd + " --n-predict -1", {"--n-predict", ">= 0", "'-1'"});
    expect_usage_error(cmd + " --prefill-chunk 0", {"--prefill-chunk", ">= 1", "'0'"});
    expect_usage_error(cmd + " --top-p 1.5", {"--top-p", "[0, 1]", "'1.5'"});
    expect_usage_error(cmd + " --min-p -0.1", {"--min-p", "[0, 1]", "'-0.1'"});
    expect_usage_error(cmd + " --temp nan", {"--temp", "'nan'"});
    expect_usage_error(cmd + " --repeat-penalty 0", {"--repeat-penalty", "> 0", "'0'"});
    expect_usage_error(cmd + " --repeat-last-n -2", {"--repeat-last-n", ">= -1", "'-2'"});
    expect_usage_error(cmd + " --seed -7", {"--seed", ">= -1", "'-7'"});
    expect_usage_error(cmd + " --top-k 1.5", {"--top-k", "'1.5'"});
  }
  expect_usage_error("generate -m " + model() + " --prompt-random -4", {"--prompt-random", ">= 0", "'-4'"});
  // A good run still works: -n 0 and a few tokens.
  const Result ok = run("generate -m " + model() + " --prompt-ids 1,2,3 -n 3 --temp 0");
  EXPECT_EQ(ok.status, 0) << ok.output;
}

TEST_F(CliFlags, LogitsAndGradsFlags) {
  const std::string base = "logits -m " + model() + " -i " + ids_path() + " -o " + out("l.npy");
  expect_usage_error(base + " --prefill -1", {"--prefill", ">= 0", "'-1'"});
  expect_usage_error(base + " --dtype bf16", {"--dtype bf16", "--device cuda"});
  expect_usage_error(base + " --dtype f16", {"--dtype f16", "--device cuda"});
  expect_usage_error("generate -m " + model() + " --prompt-ids 1 --dtype bf16", {"--device cuda"});
  expect_usage_error("bench --dtype bf16", {"--device cuda"});
  expect_usage_error(base + " --device gpu", {"--device", "gpu", "cpu", "cuda"});
  expect_usage_error("train --task parity --steps 1 --dtype f16", {"--dtype", "f16", "bf16"});
  EXPECT_FALSE(fs::exists(out("l.npy")));
  const Result ok = run(base + " --prefill 2 -t 1");
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_TRUE(fs::exists(out("l.npy")));
}

TEST_F(CliFlags, BenchFlags) {
  expect_usage_error("bench --seq-len 0", {"--seq-len", ">= 1", "'0'"});
  expect_usage_error("bench --seq-len -8", {"--seq-len", ">= 1", "'-8'"});
  expect_usage_error("bench --decode-tokens 0", {"--decode-tokens", ">= 1", "'0'"});
  expect_usage_error("bench --batch 0", {"--batch", ">= 1", "'0'"});
  expect_usage_error("bench --generate --batch 1 0", {"--batch", ">= 1", "'0'"});
  expect_usage_error("bench --n-layer 0", {"--n-layer", ">= 1", "'0'"});
  expect_usage_error("bench --d-model -1", {"--d-model", ">= 1", "'-1'"});
  expect_usage_error("bench --d-intermediate -1", {"--d-intermediate", ">= 0", "'-1'"});
  expect_usage_error("bench --repeat 0", {"--repeat", "1 to 1000", "'0'"});
  expect_usage_error("bench --repeat x", {"--repeat", "'x'"});
  expect_usage_error("bench --generate --repeat 2", {"--repeat", "not to --generate"});
  expect_usage_error("bench --models mamba1 --seq-len 8 --json " + missing() + "/b.json",
                     {"--json", missing(), "does not exist"});
}

TEST_F(CliFlags, ServeTrainEvalFlags) {
  const std::string serve = "serve -m " + model();
  expect_usage_error(serve + " --port 70000", {"--port", "0 to 65535", "'70000'"});
  expect_usage_error(serve + " --parallel 0", {"--parallel", "'0'"});
  expect_usage_error(serve + " --queue -1", {"--queue", ">= 0", "'-1'"});
  expect_usage_error(serve + " --cache-mib -1", {"--cache-mib", ">= 0", "'-1'"});
  expect_usage_error(serve + " --ctx-size -1", {"--ctx-size", ">= 0", "'-1'"});
  expect_usage_error(serve + " --prefill-chunk 0", {"--prefill-chunk", ">= 1", "'0'"});
  expect_usage_error(serve + " --dtype bf16", {"--device cuda"});
  const std::string train = "train --task parity --steps 1";
  expect_usage_error(train + " --batch 0", {"--batch", ">= 1", "'0'"});
  expect_usage_error("train --task parity --steps 0", {"--steps", ">= 1", "'0'"});
  expect_usage_error(train + " --lr 0", {"--lr", "> 0", "'0'"});
  expect_usage_error(train + " --beta2 1", {"--beta2", "[0, 1)", "'1'"});
  expect_usage_error(train + " --d-model 0", {"--d-model", ">= 1", "'0'"});
  expect_usage_error(train + " --seed -1", {"--seed", ">= 0", "'-1'"});
  expect_usage_error(train + " --dtype bf16", {"--device cuda"});
  expect_usage_error(train + " --plot " + *root_, {"--plot", "is a folder"});
  const std::string eval = "eval -m " + model() + " --task parity";
  expect_usage_error(eval + " --length 0", {"--length", ">= 1", "'0'"});
  expect_usage_error(eval + " --batches 0", {"--batches", ">= 1", "'0'"});
  expect_usage_error(eval + " --batch -2", {"--batch", ">= 1", "'-2'"});
}

TEST_F(CliFlags, OutputFoldersAreCheckedBeforeWork) {
  ASSERT_FALSE(fs::exists(missing()));
  // Generation never starts: nothing is streamed to stdout.
  expect_usage_error(
      "generate -m " + model() + " --prompt-ids 1,2,3 -n 50 --save-state " + missing() + "/s.bin",
      {"--save-state", missing(), "does not exist"});
  expect_usage_error("logits -m " + model() + " -i " + ids_path() + " -o " + missing() + "/l.npy",
                     {"--output", missing(), "does not exist"});
  expect_usage_error("grads -m " + model() + " -i " + ids_path() + " -o " + missing() + "/g.safetensors",
                     {"--output", missing(), "does not exist"});
  expect_usage_error("logits -m " + model() + " -i " + ids_path() + " -o " + *root_,
                     {"--output", "is a folder"});
}

}  // namespace
}  // namespace mamba
