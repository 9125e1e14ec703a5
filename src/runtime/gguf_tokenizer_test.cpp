// A tokenizer.json written as GGUF tokenizer.ggml.* and read back encodes every fixture case to
// the ids HF's tokenizer gave (cases.json) and decodes them back; SentencePiece vocabularies also
// without merges (derived from the scores, as llama.cpp's own llama-type files are); bos / eos /
// chat template round trip; a .gguf alone gives load_tokenizer and eos_token_ids.
#include "runtime/gguf_tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "runtime/model_files.h"
#include "testing.h"

namespace mamba::runtime {
namespace {

// Writes the tokenizer (and `info`) into a GGUF without tensors; `drop` names keys left out.
std::string write_vocab(const std::string& dir, const std::string& tokenizer_json, const GgufVocabInfo& info,
                        const std::string& name, const std::string& drop = "") {
  io::GgufWriter w;
  w.set("general.architecture", io::GgufValue::of_string("mamba2"));
  io::GgufWriter vocab;
  add_gguf_tokenizer(vocab, read_file(tokenizer_json), tokenizer_json, info);
  for (auto& [k, v] : vocab.metadata)
    if (k != drop) w.set(k, v);
  const std::string path = path_join(dir, name + ".gguf");
  w.write(path);
  return path;
}

void expect_cases(const tok::Tokenizer& t, const std::string& cases_path) {
  const nlohmann::json cases = nlohmann::json::parse(read_file(cases_path));
  ASSERT_GT(cases.size(), 10u);
  for (const nlohmann::json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.encode(text), want) << "text: " << text;
    EXPECT_EQ(t.decode(want), c["decoded"].get<std::string>()) << "text: " << text;
  }
}

class GgufTokenizer : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufTokenizer, EncodesAsTheHfTokenizer) {
  MAMBA_REQUIRE_FIXTURES(root);
  const std::string dir = path_join(root, std::string("tokenizers/") + GetParam());
  const std::string tmp = testing::fresh_temp_dir("gguf_tokenizer_test");
  GgufVocabInfo info;
  info.bos = 1;
  info.eos = 2;
  info.add_bos = true;
  info.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  const std::string path = write_vocab(tmp, path_join(dir, "tokenizer.json"), info, GetParam());
  const io::GgufFile g = io::GgufFile::open(path);
  const bool spm = g.get_string("tokenizer.ggml.model") == "llama";
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"),
            std::string(GetParam()).starts_with("spm") ? "llama" : "gpt2");
  const auto tok = load_tokenizer(path);  // the .gguf alone
  ASSERT_NE(tok, nullptr);
  expect_cases(*tok, path_join(dir, "cases.json"));
  const auto hf = tok::Tokenizer::from_file(path_join(dir, "tokenizer.json"));
  EXPECT_EQ(tok->vocab_size(), hf->vocab_size());
  const GgufVocabInfo back = gguf_vocab_info(g);
  EXPECT_EQ(back.bos, info.bos);
  EXPECT_EQ(back.eos, info.eos);
  EXPECT_TRUE(back.add_bos);
  EXPECT_EQ(back.chat_template, info.chat_template);
  EXPECT_EQ(eos_token_ids(path, tok.get()), std::vector<int32_t>{2});
  if (spm) {
    // llama.cpp's own SentencePiece files carry scores, no merges: ours derive them.
    const std::string no_merges = write_vocab(tmp, path_join(dir, "tokenizer.json"), info,
                                              std::string(GetParam()) + "_scores", "tokenizer.ggml.merges");
    EXPECT_FALSE(io::GgufFile::open(no_merges).has("tokenizer.ggml.merges"));
    expect_cases(*load_tokenizer(no_merges), path_join(dir, "cases.json"));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufTokenizer,
                         ::testing::Values("bpe-gpt2-style", "bpe-llama3-style", "spm-legacy",
                                           "spm-metaspace"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(GgufTokenizerErrors, NoneUnknownAndBadArrays) {
  const std::string tmp = testing::fresh_temp_dir("gguf_tokenizer_errors");
  io::GgufWriter none;
  none.set("tokenizer.ggml.model", io::GgufValue::of_string("none"));
  none.write(path_join(tmp, "none.gguf"));
  EXPECT_EQ(load_tokenizer(path_join(tmp, "none.gguf")), nullptr);
  io::GgufWriter bert;
  bert.set("tokenizer.ggml.model", io::GgufValue::of_string("bert"));
  bert.write(path_join(tmp, "bert.gguf"));
  try {
    load_tokenizer(path_join(tmp, "bert.gguf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model is 'bert', expected gpt2, llama or none"),
              std::string::npos)
        << e.what();
  }
  io::GgufWriter bad;
  bad.set("tokenizer.ggml.model", io::GgufValue::of_string("gpt2"));
  bad.set("tokenizer.ggml.tokens",
          io::GgufValue::of_array(io::GgufType::string,
                                  {io::GgufValue::of_string("a"), io::GgufValue::of_string("b")}));
  bad.set("tokenizer.ggml.token_type",
          io::GgufValue::of_array(io::GgufType::i32, {io::GgufValue::of_i32(1)}));
  bad.write(path_join(tmp, "bad.gguf"));
  try {
    load_tokenizer(path_join(tmp, "bad.gguf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token_type has 1 entries, expected one per token (2)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mamba::runtime
