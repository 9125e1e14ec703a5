// The `mambacpp` subcommands: each registers its flags on the app and runs when chosen.
#pragma once
#include <mambacpp/mambacpp.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace mambacpp::cli {

using Runner = std::function<int()>;

Runner add_info(CLI::App& app);
Runner add_logits(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_chat(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_grads(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_classify(CLI::App& app);

// --dtype, the storage type of the linear layers' weights (logits, bench, generate, chat).
inline CLI::Option* add_dtype_option(CLI::App& app, std::string& dtype) {
  return app.add_option("--dtype", dtype, "linear-layer weights: f32, bf16 or f16 (cuda only; default f32)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
}
inline DType matmul_dtype(const std::string& dtype) {
  return dtype == "bf16" ? DType::bf16 : dtype == "f16" ? DType::f16 : DType::f32;
}

}  // namespace mambacpp::cli
