// mambacpp public API: text generation. A Session holds one sequence's state over a shared model
// (prefill, one-token decode through a CUDA graph on the GPU, state save / restore); a Sampler
// picks tokens (llama.cpp's parameters and order); generate_batch decodes several sessions together.
//
//   auto tokenizer = mambacpp::load_tokenizer("path/to/checkpoint");
//   mambacpp::Session session(model);
//   mambacpp::Sampler sampler({.temperature = 0.8f, .seed = 1}, model.vocab_size());
//   session.generate(tokenizer->encode("Hello"), {.max_tokens = 32}, sampler, tokenizer.get(),
//                    [](int32_t, std::string_view text) { std::cout << text; return true; });
//   session.save_state("hello.mstate");                               // load_state() continues it
//
// One Session per thread (it owns its Context); the Model it reads may be shared.
#pragma once
#include <mambacpp/common.h>
#include <mambacpp/model.h>
#include <mambacpp/tensor.h>
#include <mambacpp/tokenizer.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mambacpp {

struct SamplingParams {
  float temperature = 1.0f;  // <= 0: greedy
  int top_k = 0;             // <= 0: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;  // -1: the whole history
  uint64_t seed = 0;
};

class Sampler {
public:
  Sampler(const SamplingParams& params, int32_t vocab_size);  // Error for out-of-range params
  ~Sampler();
  Sampler(Sampler&& other) noexcept;
  Sampler& operator=(Sampler&& other) noexcept;

  int32_t sample(const float* logits, std::span<const int32_t> history);
  void reset(uint64_t seed);

  struct Impl;
  Impl& impl() { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

struct StopCriteria {
  std::vector<int32_t> eos_ids = {};           // any of these ends the sequence (not printed)
  std::vector<std::string> stop_strings = {};  // matched in the text (needs a tokenizer)
};

struct SessionOptions {
  int64_t prefill_chunk = 256;  // tokens per whole-sequence pass
  int64_t history_limit = -1;   // tokens of history kept for the sampler's penalties; -1: all
  KernelPlan plan = {};         // the Session's Context's kernel plan
};

struct GenerateParams {
  int64_t max_tokens = 128;
  StopCriteria stop = {};
};

enum class StopReason { length, eos, stop_string, callback };
const char* stop_reason_name(StopReason reason);

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, the final eos / stop-string token included
  std::string text;             // the text shown (a stop string excluded); empty without a tokenizer
  StopReason reason = StopReason::length;
  int stop_index = -1;  // which stop string ended it
  int64_t n_prompt = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Called with each generated token and its text (empty without a tokenizer); false stops.
using TokenCallback = std::function<bool(int32_t token, std::string_view text)>;

class Session {
public:
  explicit Session(const Model& model, const SessionOptions& options = {});
  ~Session();
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;

  Tensor prefill(std::span<const int32_t> tokens);  // logits after the last token [vocab]
  Tensor decode(int32_t token);
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateParams& params, Sampler& sampler,
                          const Tokenizer* tokenizer = nullptr, const TokenCallback& on_token = {});
  void reset();  // back to an empty sequence

  // The state and history as a file, or as bytes in memory (the same format; checked against the
  // model on load).
  void save_state(const std::string& path) const;
  void load_state(const std::string& path);
  std::string state_bytes() const;
  void load_state_bytes(std::string_view bytes);

  const Model& model() const;
  int64_t position() const;
  Tensor logits() const;  // after the last token consumed [vocab_padded]; undefined before any

  struct Impl;
  Impl& impl() { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

struct BatchResult {
  std::vector<GenerateResult> sequences;  // one per session
  bool stacked = false;                   // decoded as one batch (else one sequence at a time)
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t decode_steps = 0;
};

// Prefills each session with its prompt, then decodes them together (stacked states when every
// layer allows it) until each stops; sessions over one model, one sampler each.
BatchResult generate_batch(std::span<Session> sessions, std::span<const std::vector<int32_t>> prompts,
                           const GenerateParams& params, std::span<Sampler> samplers);

}  // namespace mambacpp
