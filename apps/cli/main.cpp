// mambacpp command-line entry: dispatches to subcommands; the only place errors are caught
// (printed as one line `error: ...`, exit status 1, usage errors included). No arguments: usage.
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "commands.h"
#include "flags.h"

namespace {

bool looks_numeric(const std::string& s) {
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end != s.c_str() && *end == '\0';
}

// A usage error as one line naming the command: an unknown flag (with the closest known one) or
// command first, since CLI11 reports a missing required flag before the flags it did not know.
int usage_error(CLI::App& app, const CLI::ParseError& e) {
  CLI::App* sub = nullptr;
  for (CLI::App* s : app.get_subcommands()) sub = s;
  const std::string where = sub ? "mambacpp " + sub->get_name() : "mambacpp";
  std::string msg = e.what();
  std::vector<std::string> left = sub ? sub->remaining() : std::vector<std::string>{};
  for (const std::string& a : app.remaining()) left.push_back(a);
  for (const std::string& arg : left) {
    if (arg.size() > 1 && arg[0] == '-' && !looks_numeric(arg)) {
      const std::string name = arg.substr(0, arg.find('='));
      const std::string near = mambacpp::cli::closest_name(name, mambacpp::cli::flag_names(sub ? *sub : app));
      msg = "unknown flag " + name + (near.empty() ? "" : " (did you mean " + near + "?)");
      break;
    }
    if (!sub) {
      std::vector<std::string> commands;
      for (const CLI::App* s :
           static_cast<const CLI::App&>(app).get_subcommands([](const CLI::App*) { return true; }))
        commands.push_back(s->get_name());
      const std::string near = mambacpp::cli::closest_name(arg, commands);
      msg = "unknown command '" + arg + "'" + (near.empty() ? "" : " (did you mean " + near + "?)");
      break;
    }
  }
  std::fprintf(stderr, "error: %s: %s (see %s --help)\n", where.c_str(), msg.c_str(), where.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mambacpp: run and train Mamba-family models (Mamba-1/2/3, hybrids) on CPU and CUDA",
               "mambacpp"};
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
  add("quantize", "write a model as a llama.cpp GGUF with bf16 / q8_0 / q4_0 / q4_k weights",
      mambacpp::cli::add_quantize);
  add("classify", "classify images with a Vision Mamba (Vim) model, or --bench its throughput",
      mambacpp::cli::add_classify);
  if (argc <= 1 || (argc == 2 && std::string(argv[1]) == "help")) {  // no arguments: usage
    std::fputs(app.help().c_str(), stdout);
    return 0;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help
    return usage_error(app, e);
  }
  try {
    // The one environment variable below the flags: the host allocation ceiling (docs/fuzzing.md).
    if (const char* env = std::getenv("MAMBACPP_MAX_ALLOC_BYTES"); env && *env)
      mambacpp::set_memory_ceiling(mambacpp::parse_byte_size(env, "MAMBACPP_MAX_ALLOC_BYTES"));
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    std::fputs(app.help().c_str(), stdout);  // only flags of the app itself
  } catch (const mambacpp::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
