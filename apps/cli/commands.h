// The `mambacpp` subcommands: each registers its flags on the app and runs when chosen.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

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

}  // namespace mambacpp::cli
