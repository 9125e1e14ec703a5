// Session (see session.h): chunked prefill, one-token decode, and the generate loop with
// streaming text, eos and stop strings (SPEC.md §5, with the intended semantics of §8.17: a
// sequence stops on its own eos, and nothing of a stop string is ever shown).
#include "runtime/session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>

#include "core/error.h"

namespace mamba::runtime {

struct Session::FingerprintCache {
  std::once_flag once;
  Fingerprint value;
};

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The generated text as it may be shown: UTF-8 characters completed (StreamDecoder), and bytes
// that could begin a stop string held back until later text rules that out.
class VisibleText {
public:
  VisibleText(const tok::Tokenizer* tokenizer, const sampling::StopCriteria& stop) : stop_(stop) {
    if (tokenizer) decoder_.emplace(*tokenizer);
  }

  // Adds the token's text (unless `hidden`, as an eos token is), and on the `final` token
  // everything still held back. Returns the text that became visible.
  std::string push(int32_t token, bool hidden, bool final) {
    if (!decoder_) return {};
    if (!hidden) text_ += decoder_->push(token);
    if (final) text_ += decoder_->flush();
    const sampling::StopCheck c = stop_.check(text_, search_from_);
    search_from_ = c.text_end;
    stopped_ = c.stopped;
    stop_index_ = c.stop_index;
    const size_t end = (final && !c.stopped) ? text_.size() : c.text_end;
    std::string visible = text_.substr(shown_, end - shown_);
    shown_ = end;
    return visible;
  }
  bool stopped() const { return stopped_; }
  int stop_index() const { return stop_index_; }
  std::string shown() const { return text_.substr(0, shown_); }

private:
  const sampling::StopCriteria& stop_;
  std::optional<tok::StreamDecoder> decoder_;
  std::string text_;
  size_t shown_ = 0, search_from_ = 0;
  bool stopped_ = false;
  int stop_index_ = -1;
};

// The logits a session keeps live on the host (the sampler reads them; a device model's are copied,
// 4 bytes per vocabulary entry per token).
Tensor on_host(const Tensor& logits) {
  return logits.device() == Device::cpu ? logits : logits.to(Device::cpu);
}

}  // namespace

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::length:
      return "length";
    case StopReason::eos:
      return "eos";
    case StopReason::stop_string:
      return "stop string";
    case StopReason::callback:
      return "callback";
  }
  return "?";
}

Session::Session(const models::Model& model, SessionOptions options)
    : model_(&model),
      options_(options),
      own_exec_(options.exec ? nullptr : std::make_unique<ops::Exec>(model.device(), options.plan)),
      exec_(options.exec ? options.exec : own_exec_.get()),
      fingerprint_(std::make_shared<FingerprintCache>()) {
  if (StepGraph::supported(model)) graph_ = std::make_unique<StepGraph>(model);
  reset();
}

void Session::reset() {
  const ops::ExecScope bind(*exec_);  // a device state is zeroed on the session's stream
  s_.state = model_->new_state(1);
  s_.logits = Tensor();
  s_.tokens.clear();
}

Tensor Session::logits() const {
  return s_.logits.defined() ? s_.logits.select(0, 0) : Tensor();
}

void Session::check_ids(std::span<const int32_t> tokens) const {
  const int64_t vocab = model_->config().vocab_padded;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab)
      throw_error(ErrorCode::out_of_range, "token id ", tokens[i], " at prompt position ", i,
                  " is outside the model's vocabulary [0, ", vocab, ")");
}

void Session::remember(int32_t token) {
  s_.tokens.push_back(token);
  const int64_t limit = options_.history_limit;
  // Trim in bulk (amortized O(1)): at least the last `limit` tokens are always kept.
  if (limit >= 0 && static_cast<int64_t>(s_.tokens.size()) > limit + std::max<int64_t>(limit, 64))
    s_.tokens.erase(s_.tokens.begin(), s_.tokens.end() - limit);
}

Tensor Session::prefill(std::span<const int32_t> tokens) {
  check_ids(tokens);
  const ops::ExecScope bind(*exec_);  // the copy of the logits to the host too
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t chunk = options_.prefill_chunk > 0 ? options_.prefill_chunk : std::max<int64_t>(n, 1);
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t len = std::min(chunk, n - start);
    Tensor ids = Tensor::empty({1, len}, DType::i32);  // [batch=1, len]
    std::memcpy(ids.raw(), tokens.data() + start, static_cast<size_t>(len) * sizeof(int32_t));
    // Only the last position's logits are kept: memory is independent of the prompt length.
    s_.logits =
        on_host(model_->forward(*exec_, ids, s_.state, /*num_last=*/1).view({1, -1}));  // [1, vocab_padded]
  }
  for (int32_t t : tokens) remember(t);
  return logits();
}

Tensor Session::decode(int32_t token) {
  check_ids({&token, 1});
  Tensor ids = Tensor::empty({1}, DType::i32);  // [batch=1]
  ids.data<int32_t>()[0] = token;
  const ops::ExecScope bind(*exec_);
  s_.logits = on_host(graph_ ? graph_->step(*exec_, ids, s_.state)
                             : model_->step(*exec_, ids, s_.state));  // [1, vocab_padded]
  remember(token);
  return logits();
}

GenerateResult Session::generate(std::span<const int32_t> prompt, const GenerateParams& params,
                                 sampling::Sampler& sampler, const tok::Tokenizer* tokenizer,
                                 const TokenCallback& on_token) {
  GenerateResult r;
  r.n_prompt = static_cast<int64_t>(prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  prefill(prompt);
  r.prefill_seconds = seconds_since(t0);
  if (params.max_tokens > 0 && !s_.logits.defined())
    throw_error(ErrorCode::invalid_argument,
                "generate: empty prompt and empty state: nothing to continue from");
  VisibleText text(tokenizer, params.stop);
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < params.max_tokens; ++i) {
    const int32_t token = sampler.sample(s_.logits.f32(), s_.tokens);
    r.tokens.push_back(token);
    const bool eos = params.stop.is_eos(token);
    const std::string visible = text.push(token, /*hidden=*/eos, /*final=*/eos || i + 1 == params.max_tokens);
    if (eos) r.reason = StopReason::eos;
    if (text.stopped()) {
      r.reason = StopReason::stop_string;
      r.stop_index = text.stop_index();
    }
    if (on_token && !on_token(token, visible) && r.reason == StopReason::length)
      r.reason = StopReason::callback;
    decode(token);  // consumed even when it ends the generation: the state covers everything shown
    if (r.reason != StopReason::length) break;
  }
  r.decode_seconds = seconds_since(t0);
  r.text = text.shown();
  return r;
}

Session Session::fork() const {
  Session s(*model_, options_);
  s.fingerprint_ = fingerprint_;
  s.s_.state = s_.state.copy();
  if (s_.logits.defined()) s.s_.logits = s_.logits.copy();
  s.s_.tokens = s_.tokens;
  return s;
}

const Fingerprint& Session::fingerprint() const {
  std::call_once(fingerprint_->once, [&] { fingerprint_->value = runtime::fingerprint(*model_); });
  return fingerprint_->value;
}

void Session::save_state(const std::string& path) const {
  runtime::save_state(path, *model_, fingerprint(), s_);
}

std::string Session::state_bytes() const {
  return state_to_bytes(*model_, fingerprint(), s_);
}

void Session::set_loaded(SessionState loaded, const std::string& source) {
  if (loaded.state.batch != 1)
    throw_error(ErrorCode::invalid_argument, source, ": holds a batch of ", loaded.state.batch,
                " sequences; a session continues one");
  s_ = std::move(loaded);
}

void Session::load_state(const std::string& path) {
  set_loaded(runtime::load_state(path, *model_, fingerprint()), path);
}

void Session::load_state_bytes(std::string_view bytes) {
  set_loaded(state_from_bytes(*model_, fingerprint(), bytes), "<bytes>");
}

}  // namespace mamba::runtime
