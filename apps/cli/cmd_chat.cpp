// `mambacpp chat`: an interactive conversation read line by line from stdin. The conversation
// lives in the session's state, so each turn prefills only its own new text, never the history.
// Turns use a plain role template ("User: ...\nAssistant:"; Jinja chat templates of
// tokenizer_config.json are not interpreted). Commands: /save F, /load F, /reset, /help; EOF ends.
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "commands.h"
#include "generation_flags.h"

namespace mambacpp::cli {

namespace {

constexpr const char* kUserStop = "\nUser:";  // stop_strings[0]: the model starting the next user turn

struct ChatArgs {
  GenerationFlags g;
  std::string system, load_state;
};

// The text of a user turn. After a reply cut at "\nUser:", that marker is already in the state.
std::string turn_text(const std::string& line, const std::string& system, int64_t position,
                      bool after_user_marker) {
  if (position == 0) return (system.empty() ? "" : system + "\n\n") + "User: " + line + "\nAssistant:";
  return (after_user_marker ? " " : "\nUser: ") + line + "\nAssistant:";
}

// Runs a /command; returns false for an unknown one. Errors (a bad file) are reported and the chat goes on.
bool run_command(const std::string& line, Session& session, bool& after_user_marker) {
  const size_t space = line.find(' ');
  const std::string cmd = line.substr(0, space);
  const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
  try {
    if (cmd == "/save" && !arg.empty()) {
      session.save_state(arg);
      std::fprintf(stderr, "saved %lld tokens to %s\n", static_cast<long long>(session.position()),
                   arg.c_str());
    } else if (cmd == "/load" && !arg.empty()) {
      session.load_state(arg);
      after_user_marker = false;
      std::fprintf(stderr, "loaded %lld tokens from %s\n", static_cast<long long>(session.position()),
                   arg.c_str());
    } else if (cmd == "/reset") {
      session.reset();
      std::fprintf(stderr, "conversation cleared\n");
    } else if (cmd == "/help") {
      std::fprintf(stderr, "/save FILE  /load FILE  /reset  /help; end of input (Ctrl-D) quits\n");
    } else {
      return false;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return true;
}

int run_chat(ChatArgs& a) {
  a.g.model = resolve_model(a.g.model);
  set_num_threads(a.g.threads);
  const Model model = load_model(a.g);
  const auto tokenizer = open_tokenizer(a.g.model, a.g.tokenizer);
  if (!tokenizer)
    throw_error(ErrorCode::invalid_argument, "chat needs a tokenizer: ", a.g.model,
                "/tokenizer.json not found (pass --tokenizer FILE or --tokenizer byte)");
  Sampler sampler(sampling_params(a.g), static_cast<int32_t>(model.vocab_size()));
  const GenerateParams params{.max_tokens = a.g.n_predict,
                              .stop = stop_criteria(a.g, tokenizer.get(), {kUserStop})};
  Session session(model, session_options(a.g));
  if (!a.load_state.empty()) session.load_state(a.load_state);
  bool after_user_marker = false;
  std::string line;
  for (std::fprintf(stderr, "> "); std::getline(std::cin, line); std::fprintf(stderr, "> ")) {
    if (line.empty()) continue;
    if (line[0] == '/') {
      if (!run_command(line, session, after_user_marker))
        std::fprintf(stderr, "unknown command (try /help)\n");
      continue;
    }
    std::vector<int32_t> ids;
    if (session.position() == 0)
      if (auto bos = tokenizer->bos_id()) ids.push_back(*bos);
    const std::vector<int32_t> turn =
        tokenizer->encode(turn_text(line, a.system, session.position(), after_user_marker));
    ids.insert(ids.end(), turn.begin(), turn.end());
    const GenerateResult r =
        session.generate(ids, params, sampler, tokenizer.get(), [](int32_t, std::string_view text) {
          std::fwrite(text.data(), 1, text.size(), stdout);
          std::fflush(stdout);
          return true;
        });
    std::printf("\n");
    std::fflush(stdout);
    const double rate = r.decode_seconds > 0 ? static_cast<double>(r.tokens.size()) / r.decode_seconds : 0.0;
    std::fprintf(stderr, "[%zu tokens, %.1f tok/s; prompt %lld tokens, %.3f s; %s]\n", r.tokens.size(), rate,
                 static_cast<long long>(r.n_prompt), r.prefill_seconds, stop_reason_name(r.reason));
    after_user_marker = r.reason == StopReason::stop_string && r.stop_index == 0;
  }
  std::fprintf(stderr, "\n");
  return 0;
}

}  // namespace

Runner add_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  add_generation_flags(app, a->g, 256);
  app.add_option("--system", a->system, "text placed before the first user turn");
  app.add_option("--load-state", a->load_state, "continue a conversation saved with /save");
  return [a]() { return run_chat(*a); };
}

}  // namespace mambacpp::cli
