// Session: one sequence being generated over a shared, immutable model. It holds the recurrent
// state, the logits after the last token consumed and the recent tokens; prompts are prefilled
// in bounded chunks, so a pure-SSM model takes any prompt length in constant memory.
//
//   Session session(model);
//   Sampler sampler({.temperature = 0}, model.config().vocab_size);
//   GenerateResult r = session.generate(prompt_ids, {.max_tokens = 64}, sampler, &tokenizer,
//                                       [](int32_t id, std::string_view text) { std::cout << text; return
//                                       true; });
//   session.save_state("chat.state");   // everything consumed so far, generated tokens included
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "models/model.h"
#include "runtime/state_io.h"
#include "runtime/step_graph.h"
#include "sampling/sampler.h"
#include "sampling/stop_criteria.h"
#include "tokenizer/tokenizer.h"

namespace mamba::runtime {

struct SessionOptions {
  // Tokens per whole-sequence pass during prefill: bounds the activations' memory. 256 rather
  // than 512: a 130M Mamba-2's 512-token prompt peaked 15-21 MiB higher (f32, Q8_0, Q4_K) at the
  // same prefill speed (docs/quantization.md, "Memory").
  int64_t prefill_chunk = 256;
  // Recent tokens kept for the sampler's penalties; -1: all (grows with the sequence).
  int64_t history_limit = -1;
  // The kernels the session's Exec picks where several compute the same thing (ops/exec.h).
  ops::KernelPlan plan = {};
  // Run on this Exec instead of an own one (its plan then applies): the caller keeps it alive and
  // uses the session only on the Exec's thread. A server's slots share the scheduler's, so a
  // request costs no new stream or BLAS handle and all its work is ordered on one stream.
  ops::Exec* exec = nullptr;
};

struct GenerateParams {
  int64_t max_tokens = 128;
  sampling::StopCriteria stop = {};  // eos ids, and stop strings (matched only when a tokenizer is given)
};

enum class StopReason { length, eos, stop_string, callback };
const char* stop_reason_name(StopReason reason);

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, the final eos / stop-string token included
  std::string text;             // the text shown (a stop string excluded); empty without a tokenizer
  StopReason reason = StopReason::length;
  int stop_index = -1;  // which of params.stop.stop_strings ended it (reason stop_string)
  int64_t n_prompt = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Called for each generated token with the text it makes visible (possibly empty: bytes of an
// unfinished UTF-8 character or of a possible stop string are held back). Return false to stop.
using TokenCallback = std::function<bool(int32_t token, std::string_view text)>;

class Session {
public:
  explicit Session(const models::Model& model, SessionOptions options = {});
  // Copies are explicit (fork()): a plain copy would share the state's tensors.
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  Session(Session&&) = default;
  Session& operator=(Session&&) = default;

  // Consumes `tokens` (continuing the sequence) by whole-sequence passes of at most
  // prefill_chunk tokens. Returns the logits after the last one: [vocab_padded].
  Tensor prefill(std::span<const int32_t> tokens);
  // Consumes one token. Returns the logits after it: [vocab_padded].
  Tensor decode(int32_t token);

  // Prefills `prompt` (may be empty to continue from the current state), then samples up to
  // params.max_tokens tokens. Every sampled token is consumed before returning, so the state
  // afterwards covers prompt + generation and a later call (or a saved state) continues exactly.
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateParams& params,
                          sampling::Sampler& sampler, const tok::Tokenizer* tokenizer = nullptr,
                          const TokenCallback& on_token = {});

  // An independent copy of the sequence so far (State::copy: costs one state's bytes).
  Session fork() const;
  void reset();  // back to an empty sequence

  void save_state(const std::string& path) const;
  void load_state(const std::string& path);
  std::string state_bytes() const;
  void load_state_bytes(std::string_view bytes);

  const models::Model& model() const { return *model_; }
  // The session's execution context (its own stream on CUDA): a session is used by one thread at
  // a time (ops/exec.h's contract); batching runs the stacked sequences on the first one's.
  ops::Exec& exec() { return *exec_; }
  const SessionOptions& options() const { return options_; }
  int64_t position() const { return s_.state.position; }
  // Logits after the last token consumed [vocab_padded]; undefined before any.
  Tensor logits() const;
  const std::vector<int32_t>& history() const { return s_.tokens; }
  // The carried state itself (batching reads and writes it; see batch.h).
  SessionState& session_state() { return s_; }
  const SessionState& session_state() const { return s_; }
  // Computed on first use (reads every weight byte) and shared with forks.
  const Fingerprint& fingerprint() const;

  // Appends to the penalty history, keeping at most history_limit tokens.
  void remember(int32_t token);

private:
  struct FingerprintCache;
  void check_ids(std::span<const int32_t> tokens) const;
  void set_loaded(SessionState loaded, const std::string& source);

  const models::Model* model_;
  SessionOptions options_;
  std::unique_ptr<ops::Exec>
      own_exec_;  // unless options.exec lends one; a pointer: the Session stays movable
  ops::Exec* exec_;
  SessionState s_;
  std::shared_ptr<FingerprintCache> fingerprint_;
  // Decode replays a captured CUDA graph of the step where the model allows (StepGraph);
  // null for CPU models and models with attention layers.
  std::unique_ptr<StepGraph> graph_;
};

}  // namespace mamba::runtime
