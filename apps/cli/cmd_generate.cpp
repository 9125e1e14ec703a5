// `mambacpp generate`: prompt -> streamed continuation on stdout (text through the tokenizer, or
// ids with --print-ids / without a tokenizer), summary on stderr. --load-state continues a saved
// sequence (the prompt, if any, is appended to it); --save-state writes the state after
// everything processed: the prompt and every generated token, as llama.cpp users expect.
#include <mambacpp/mambacpp.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "commands.h"
#include "flags.h"
#include "generation_flags.h"

namespace mambacpp::cli {

namespace {

struct GenerateArgs {
  GenerationFlags g;
  std::string prompt, prompt_file, prompt_ids, save_state, load_state;
  int64_t prompt_random = 0;
  bool print_ids = false;
};

// The prompt's ids from exactly one of -p, -f, --prompt-ids (none: empty). A text prompt gets the
// tokenizer's BOS when it defines one, as its post-processor would add.
std::vector<int32_t> prompt_ids(const GenerateArgs& a, const Tokenizer* tokenizer) {
  const int given =
      !a.prompt.empty() + !a.prompt_file.empty() + !a.prompt_ids.empty() + (a.prompt_random > 0);
  if (given > 1)
    throw_error(ErrorCode::invalid_argument, "generate: give one of -p, -f, --prompt-ids, --prompt-random");
  if (!a.prompt_ids.empty()) return parse_ids(a.prompt_ids, "--prompt-ids");
  if (a.prompt.empty() && a.prompt_file.empty()) return {};
  const std::string text = a.prompt_file.empty() ? a.prompt : read_file(a.prompt_file);
  if (!tokenizer)
    throw_error(ErrorCode::invalid_argument, "generate: a text prompt needs a tokenizer: ", a.g.model,
                "/tokenizer.json not found (pass --tokenizer FILE, --tokenizer byte, or --prompt-ids)");
  std::vector<int32_t> ids;
  if (auto bos = tokenizer->bos_id()) ids.push_back(*bos);
  const std::vector<int32_t> body = tokenizer->encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

// --prompt-random N: uniform random ids fed in pieces, so no N-sized array exists (a memory
// benchmark of prefill: with a pure-SSM model the peak RSS does not depend on N).
double prefill_random(Session& session, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(session.model().vocab_size() - 1));
  std::vector<int32_t> piece;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t done = 0; done < n;) {
    piece.resize(static_cast<size_t>(std::min<int64_t>(n - done, 1 << 16)));
    for (int32_t& t : piece) t = id(rng);
    session.prefill(piece);
    done += static_cast<int64_t>(piece.size());
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void print_summary(const GenerateArgs& a, const GenerateResult& r, const Session& session) {
  auto rate = [](int64_t n, double s) { return s > 0 ? static_cast<double>(n) / s : 0.0; };
  std::fprintf(stderr, "prompt: %lld tokens, prefill %.3f s (%.1f tok/s)\n",
               static_cast<long long>(r.n_prompt), r.prefill_seconds, rate(r.n_prompt, r.prefill_seconds));
  std::fprintf(stderr, "generated: %zu tokens, decode %.3f s (%.1f tok/s), stop: %s\n", r.tokens.size(),
               r.decode_seconds, rate(static_cast<int64_t>(r.tokens.size()), r.decode_seconds),
               stop_reason_name(r.reason));
  std::fprintf(stderr, "state: position %lld%s%s | seed %lld | threads %d | peak RSS %.1f MiB\n",
               static_cast<long long>(session.position()), a.save_state.empty() ? "" : ", saved to ",
               a.save_state.c_str(), static_cast<long long>(a.g.seed), num_threads(), peak_rss_mib());
}

int run_generate(GenerateArgs& a) {
  check_output_path("--save-state", a.save_state);
  a.g.model = resolve_model(a.g.model);
  set_num_threads(a.g.threads);
  const Model model = load_model(a.g);
  const auto tokenizer = open_tokenizer(a.g.model, a.g.tokenizer);
  const std::vector<int32_t> prompt = prompt_ids(a, tokenizer.get());
  const SamplingParams sp = sampling_params(a.g);
  GenerateParams params{.max_tokens = a.g.n_predict, .stop = stop_criteria(a.g, tokenizer.get())};
  Session session(model, session_options(a.g));
  if (!a.load_state.empty()) session.load_state(a.load_state);
  if (prompt.empty() && a.prompt_random <= 0 && session.position() == 0 && a.g.n_predict > 0)
    throw_error(
        ErrorCode::invalid_argument,
        "generate: no prompt: pass -p TEXT, -f FILE, --prompt-ids or --prompt-random (or --load-state)");
  const double random_seconds = a.prompt_random > 0 ? prefill_random(session, a.prompt_random, sp.seed) : 0.0;
  Sampler sampler(sp, static_cast<int32_t>(model.vocab_size()));
  const bool print_ids = a.print_ids || !tokenizer;
  bool first = true;
  GenerateResult r =
      session.generate(prompt, params, sampler, tokenizer.get(), [&](int32_t id, std::string_view text) {
        if (print_ids) {
          std::printf(first ? "%d" : " %d", id);
        } else {
          std::fwrite(text.data(), 1, text.size(), stdout);
        }
        first = false;
        std::fflush(stdout);
        return true;
      });
  std::printf("\n");
  std::fflush(stdout);
  r.n_prompt += a.prompt_random;
  r.prefill_seconds += random_seconds;
  if (!a.save_state.empty()) session.save_state(a.save_state);
  print_summary(a, r, session);
  return 0;
}

}  // namespace

Runner add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  add_generation_flags(app, a->g, 128);
  app.add_option("-p,--prompt", a->prompt, "prompt text");
  app.add_option("-f,--file", a->prompt_file, "read the prompt text from a file");
  app.add_option("--prompt-ids", a->prompt_ids, "prompt as token ids: 1,2,3");
  app.add_option("--prompt-random", a->prompt_random,
                 "prompt of N random ids, streamed (prefill memory benchmark)")
      ->check(int_range(0));
  app.add_option("--load-state", a->load_state,
                 "continue a state saved by --save-state (the prompt is appended)");
  app.add_option("--save-state", a->save_state, "save the state after the prompt and all generated tokens");
  app.add_flag("--print-ids", a->print_ids, "print generated token ids instead of text");
  return [a]() { return run_generate(*a); };
}

}  // namespace mambacpp::cli
