// `mambacpp quantize`: a model folder (config.json + safetensors) or a GGUF -> a llama.cpp GGUF
// with its linear layers and embedding in bf16, q8_0, q4_0 or q4_k (docs/quantization.md).
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "commands.h"
#include "flags.h"
#include "generation_flags.h"

namespace mambacpp::cli {

namespace {
struct QuantizeArgs {
  std::string model, type, output;
  int threads = 0;
};

DType weight_type(const std::string& type) {
  if (type == "q8_0") return DType::q8_0;
  if (type == "q4_0") return DType::q4_0;
  if (type == "q4_k") return DType::q4_k;
  if (type == "bf16") return DType::bf16;
  return DType::f32;
}
}  // namespace

Runner add_quantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  app.add_option("-m,--model", a->model, "model directory (config.json + *.safetensors) or a .gguf")
      ->required();
  app.add_option("--type", a->type, "weight type of the linear layers and the embedding")
      ->required()
      ->check(CLI::IsMember({"q8_0", "q4_0", "q4_k", "bf16", "f32"}));
  app.add_option("-o,--output", a->output, ".gguf file to write (atomically)")->required();
  add_threads_option(app, a->threads);
  return [a]() {
    check_output_path("--output", a->output);
    set_num_threads(a->threads);
    const std::string dir = resolve_model(a->model);
    const Model model = Model::load(dir);
    // The folder's tokenizer.json goes in as tokenizer.ggml.* (a GGUF alone then runs generate).
    const bool tokenizer =
        quantize(model, dir, a->output, weight_type(a->type), [](const std::string& warning) {
          std::fprintf(stderr, "warning: tokenizer not written: %s\n", warning.c_str());
        });
    std::printf("wrote %s: %s weights, %s, %.2f MiB\n", a->output.c_str(), a->type.c_str(),
                !tokenizer ? "no tokenizer" : "tokenizer.ggml.* from tokenizer.json",
                static_cast<double>(std::filesystem::file_size(a->output)) / (1024.0 * 1024.0));
    return 0;
  };
}

}  // namespace mambacpp::cli
