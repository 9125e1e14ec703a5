// `mambacpp info --model DIR`: architecture, layer kinds, the dimensions of each mixer kind,
// parameters, the stored weight dtype, the tokenizer, state bytes (the library's model_report).
// DIR may be a training checkpoint ROOT (its latest step), as for `eval`.
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <string>

#include "commands.h"

namespace mambacpp::cli {

Runner add_info(CLI::App& app) {
  auto model_arg = std::make_shared<std::string>();
  app.add_option(
         "-m,--model", *model_arg,
         "model directory (config.json + weights), a .gguf, or a training checkpoint ROOT (its latest step)")
      ->required();
  return [model_arg]() {
    model_report(train::resolve_model_dir(*model_arg),
                 [](const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); });
    return 0;
  };
}

}  // namespace mambacpp::cli
