// mambacpp command-line entry: dispatches to subcommands; the only place errors are caught
// (printed as one line `error: ...`, exit status 1).
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"mambacpp: run and train Mamba-family models (Mamba-1/2/3, hybrids) on CPU and CUDA"};
  app.require_subcommand(0, 1);
  std::map<CLI::App*, mambacpp::cli::Runner> runners;
  auto add = [&](const char* name, const char* help, mambacpp::cli::Runner (*fn)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    runners[sub] = fn(*sub);
  };
  add("info", "print a model's architecture, parameter count and state size", mambacpp::cli::add_info);
  add("logits", "compute logits for token ids from a .npy file", mambacpp::cli::add_logits);
  add("bench", "benchmark prefill and decode on random-weight models", mambacpp::cli::add_bench);
  add("generate", "generate text (or token ids) from a prompt, streaming it", mambacpp::cli::add_generate);
  add("chat", "interactive chat on stdin, the conversation kept in the state", mambacpp::cli::add_chat);
  add("tokenize", "text -> token ids, or ids -> text with --decode", mambacpp::cli::add_tokenize);
  add("grads", "next-token loss and d loss / d parameter for token ids from a .npy file",
      mambacpp::cli::add_grads);
  add("train", "train a model from scratch on a synthetic task or byte-level text", mambacpp::cli::add_train);
  add("eval", "accuracy and scaled accuracy of a trained model on a task at given lengths",
      mambacpp::cli::add_eval);
  add("serve", "OpenAI-compatible HTTP server: continuous batching, prefix-state cache",
      mambacpp::cli::add_serve);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    // No subcommand: the main job on its embedded default.
    const char* bench_argv[] = {"mambacpp", "bench"};
    app.parse(2, const_cast<char**>(bench_argv));
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const mambacpp::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
