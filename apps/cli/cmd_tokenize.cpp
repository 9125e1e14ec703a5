// `mambacpp tokenize`: text -> token ids (space-separated), or with --decode ids -> text. No BOS
// or EOS is added; special tokens written in the text are matched.
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "generation_flags.h"

namespace mambacpp::cli {

namespace {
struct TokenizeArgs {
  std::string tokenizer, model, text;
  bool decode = false;
};
}  // namespace

Runner add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  app.add_option("--tokenizer", a->tokenizer, "tokenizer.json, or 'byte': one token per byte");
  app.add_option("-m,--model", a->model, "model directory holding tokenizer.json (instead of --tokenizer)");
  app.add_option("--text", a->text, "text to encode, or ids to decode (\"1 2 3\")")->required();
  app.add_flag("--decode", a->decode, "decode ids given in --text");
  return [a]() {
    if (a->tokenizer.empty() == a->model.empty())
      throw_error(ErrorCode::invalid_argument, "tokenize: give one of --tokenizer FILE or -m DIR");
    const auto tokenizer = open_tokenizer(resolve_model(a->model), a->tokenizer);
    if (!tokenizer) throw_error(ErrorCode::not_found, "tokenize: ", a->model, "/tokenizer.json not found");
    if (a->decode) {
      const std::vector<int32_t> ids = parse_ids(a->text, "--text");
      std::string text;
      try {
        text = tokenizer->decode(ids);
      } catch (const Error& e) {  // an id the tokenizer does not have: name the flag
        throw_error(e.code(), "tokenize --decode --text: ", e.what());
      }
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::printf("\n");
      return 0;
    }
    const std::vector<int32_t> ids = tokenizer->encode(a->text);
    for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
    std::printf("\n");
    return 0;
  };
}

}  // namespace mambacpp::cli
