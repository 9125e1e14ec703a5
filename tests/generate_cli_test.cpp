// `mambacpp generate`, `chat` and `tokenize` as processes: for every fixture model, greedy tokens
// generated in one run equal those of a run that saved its state and a NEW process that loaded it
// and went on; states of another model and damaged files are refused with one `error:` line;
// tokenize round-trips the fixture tokenizers; chat keeps the conversation in its state.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "io/npy.h"
#include "testing.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;

const char* const kFixtures[] = {"hf-mamba1",       "hf-mamba2",       "ssm-mamba1", "ssm-mamba2",
                                 "ssm-mamba3-siso", "ssm-mamba3-mimo", "ssm-hybrid"};

using Result = testing::CliResult;

// Runs `mambacpp ARGS` (stdin from `input` when given); stdout and stderr kept apart.
Result run(const std::string& args, const std::string& input = "") {
  return testing::run_cli(MAMBACPP_CLI, args, input);
}

std::string quote(const std::string& s) {  // for sh: '...' with ' written as '\''
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

std::string chomp(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// The first n ids of row 0 of the fixture's input, as "a,b,c".
std::string prompt_of(const std::string& dir, int64_t first, int64_t n) {
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  std::string s;
  for (int64_t t = first; t < first + n; ++t) {
    if (!s.empty()) s += ',';
    s += std::to_string(ids.data<int64_t>()[t]);
  }
  return s;
}

class GenerateCli : public ::testing::TestWithParam<const char*> {};

TEST_P(GenerateCli, SaveThenLoadInANewProcessContinuesExactly) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, GetParam());
  const std::string base = "generate -m " + dir + " --temp 0 --ignore-eos --print-ids -t 1 ";
  const std::string p = prompt_of(dir, 0, 9), q = prompt_of(dir, 9, 4);
  const std::string state0 = ::testing::TempDir() + "/gen0_" + GetParam() + ".mstate";
  const std::string state5 = ::testing::TempDir() + "/gen5_" + GetParam() + ".mstate";

  const Result all = run(base + "--prompt-ids " + p + " -n 12");
  ASSERT_EQ(all.status, 0) << all.err;
  ASSERT_EQ(std::count(all.out.begin(), all.out.end(), ' '), 11) << all.out;

  ASSERT_EQ(run(base + "--prompt-ids " + p + " -n 0 --save-state " + state0).status, 0);
  const Result resumed = run(base + "--load-state " + state0 + " -n 12");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(resumed.out, all.out);

  const Result head = run(base + "--prompt-ids " + p + " -n 5 --save-state " + state5);
  const Result tail = run(base + "--load-state " + state5 + " -n 7");
  ASSERT_EQ(tail.status, 0) << tail.err;
  EXPECT_EQ(chomp(head.out) + " " + tail.out, all.out);

  // A prompt given with --load-state is appended to the saved sequence.
  const Result joined = run(base + "--prompt-ids " + p + "," + q + " -n 6");
  const Result appended = run(base + "--load-state " + state0 + " --prompt-ids " + q + " -n 6");
  ASSERT_EQ(appended.status, 0) << appended.err;
  EXPECT_EQ(appended.out, joined.out);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GenerateCli, ::testing::ValuesIn(kFixtures),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(GenerateCliErrors, ForeignAndDamagedStatesAreRefused) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string state = ::testing::TempDir() + "/foreign.mstate";
  const std::string m2 = path_join(root, "ssm-mamba2"), gen_m2 = std::string("generate -t 1 -m ") + m2;
  ASSERT_EQ(run(gen_m2 + " --prompt-ids 1,2,3 -n 0 --save-state " + state).status, 0);
  for (const char* other : {"ssm-mamba1", "hf-mamba2", "ssm-hybrid"}) {
    const std::string other_dir = path_join(root, other);
    const Result r =
        run(std::string("generate -t 1 -m ") + other_dir + " --load-state " + state + " -n 2 --temp 0");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err.rfind("error: " + state + ": state was saved by model ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  const std::string bytes = read_file(state);
  const std::string damaged = ::testing::TempDir() + "/damaged.mstate";
  for (size_t cut : {size_t(0), size_t(5), size_t(60), bytes.size() / 2, bytes.size() - 1}) {
    write_file_atomic(damaged, bytes.substr(0, cut));
    const Result r = run(gen_m2 + " --load-state " + damaged + " -n 2");
    EXPECT_EQ(r.status, 1) << "cut " << cut;
    EXPECT_EQ(r.err.rfind("error: " + damaged + ": ", 0), 0u) << r.err;
  }
  std::string flipped = bytes;
  flipped[bytes.size() / 3] ^= 0x10;
  write_file_atomic(damaged, flipped);
  const Result r = run(gen_m2 + " --load-state " + damaged + " -n 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("checksum mismatch"), std::string::npos) << r.err;
}

TEST(TokenizeCli, RoundTripsTheFixtureTokenizers) {
  MAMBA_REQUIRE_FIXTURES(root);
  for (const char* name : {"bpe-gpt2-style", "bpe-llama3-style"}) {
    const std::string dir = path_join(path_join(root, "tokenizers"), name);
    const std::string tok = std::string(" --tokenizer ") + path_join(dir, "tokenizer.json");
    const auto cases = nlohmann::json::parse(read_file(path_join(dir, "cases.json")));
    for (const auto& c : cases) {
      const std::string text = c["text"].get<std::string>();
      std::string want;
      for (const auto& id : c["ids"]) {
        if (!want.empty()) want += ' ';
        want += std::to_string(id.get<int>());
      }
      const Result enc = run("tokenize" + tok + " --text " + quote(text));
      ASSERT_EQ(enc.status, 0) << enc.err;
      EXPECT_EQ(chomp(enc.out), want) << name << ": " << text;
      const Result dec = run("tokenize --decode" + tok + " --text " + quote(chomp(enc.out)));
      ASSERT_EQ(dec.status, 0) << dec.err;
      EXPECT_EQ(chomp(dec.out), c["decoded"].get<std::string>()) << name << ": " << text;
    }
  }
}

// A model folder with a tokenizer.json whose ids fit the fixture's 300-token vocabulary: the
// gpt2-style fixture tokenizer cut to ids < 300 (single bytes and the first merges).
std::string model_with_tokenizer(const std::string& root) {
  const fs::path dir =
      fs::path(::testing::TempDir()) / (std::string("with_tokenizer_") + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::remove(dir / f);
    fs::create_symlink(fs::path(root) / "ssm-mamba2" / f, dir / f);
  }
  auto j = nlohmann::json::parse(read_file(path_join(root, "tokenizers/bpe-gpt2-style/tokenizer.json")));
  nlohmann::json vocab = nlohmann::json::object(), merges = nlohmann::json::array();
  for (const auto& [token, id] : j["model"]["vocab"].items())
    if (id.get<int>() < 300) vocab[token] = id;
  for (const auto& m : j["model"]["merges"])
    if (vocab.contains(m[0].get<std::string>() + m[1].get<std::string>())) merges.push_back(m);
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = merges;
  write_file_atomic((dir / "tokenizer.json").string(), j.dump());
  return dir.string();
}

TEST(GenerateCliText, StreamsTheDecodedIds) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = model_with_tokenizer(root);
  const std::string base =
      "generate -t 1 -m " + dir + " -p " + quote("the cat sat on") + " -n 16 --temp 0 --ignore-eos";
  const Result text = run(base);
  const Result ids = run(base + " --print-ids");
  ASSERT_EQ(text.status, 0) << text.err;
  ASSERT_EQ(ids.status, 0) << ids.err;
  const Result decoded = run("tokenize --decode -m " + dir + " --text " + quote(chomp(ids.out)));
  EXPECT_EQ(text.out, decoded.out);
  EXPECT_NE(text.err.find("prompt: "), std::string::npos) << text.err;
  EXPECT_NE(text.err.find("tok/s"), std::string::npos) << text.err;
}

TEST(ChatCli, ConversationLivesInTheState) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = model_with_tokenizer(root);
  const std::string chat = "chat -m " + dir + " -n 6 --temp 0 --ignore-eos -t 1";
  const std::string saved = ::testing::TempDir() + "/chat.mstate";
  const Result one = run(chat, "hello there\n/save " + saved + "\nhow are you\n");
  ASSERT_EQ(one.status, 0) << one.err;
  const Result two = run(chat + " --load-state " + saved, "how are you\n");
  ASSERT_EQ(two.status, 0) << two.err;
  const size_t split = one.out.find('\n');
  ASSERT_NE(split, std::string::npos) << one.out;
  EXPECT_EQ(one.out.substr(split + 1), two.out);  // the second reply, from the saved first turn
  const Result reset = run(chat, "how are you\n/reset\nhow are you\n/load /nonexistent\n/bogus\n");
  ASSERT_EQ(reset.status, 0) << reset.err;
  const size_t mid = reset.out.find('\n');
  EXPECT_EQ(reset.out.substr(0, mid + 1), reset.out.substr(mid + 1));
  EXPECT_NE(reset.err.find("error: /nonexistent"), std::string::npos) << reset.err;
  EXPECT_NE(reset.err.find("unknown command"), std::string::npos) << reset.err;
}

}  // namespace
}  // namespace mamba
