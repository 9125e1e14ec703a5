// The public Tokenizer, Sampler and Session (tokenizer.h, session.h) over tok::, sampling:: and
// runtime::.
#include <utility>
#include <vector>

#include "internal.h"
#include "runtime/batch.h"
#include "runtime/model_files.h"

namespace mambacpp {

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  return guard([&] { return impl_->tok->encode(text); });
}
std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  return guard([&] { return impl_->tok->decode(ids); });
}
std::string Tokenizer::token_text(int32_t id) const {
  return guard([&] { return impl_->tok->token_text(id); });
}
int32_t Tokenizer::vocab_size() const {
  return impl_->tok->vocab_size();
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->tok->bos_id();
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->tok->eos_id();
}
std::shared_ptr<const Tokenizer> wrap(std::shared_ptr<const mamba::tok::Tokenizer> t) {
  if (!t) return nullptr;
  return std::make_shared<const Tokenizer>(std::make_unique<Tokenizer::Impl>(Tokenizer::Impl{std::move(t)}));
}
std::shared_ptr<const Tokenizer> Tokenizer::byte_level() {
  return wrap(std::make_shared<const mamba::tok::ByteTokenizer>());
}
std::shared_ptr<const Tokenizer> Tokenizer::from_file(const std::string& path) {
  return guard([&] { return wrap(mamba::tok::Tokenizer::from_file(path)); });
}
std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& model_dir, const std::string& path) {
  return guard([&] { return wrap(mamba::runtime::load_tokenizer(model_dir, path)); });
}
std::vector<int32_t> eos_token_ids(const std::string& model_dir, const Tokenizer* tokenizer) {
  return guard([&] {
    return mamba::runtime::eos_token_ids(model_dir, tokenizer ? tokenizer->impl().tok.get() : nullptr);
  });
}

namespace {
mamba::sampling::SamplingParams to_internal(const SamplingParams& p) {
  return {.temperature = p.temperature,
          .top_k = p.top_k,
          .top_p = p.top_p,
          .min_p = p.min_p,
          .repetition_penalty = p.repetition_penalty,
          .presence_penalty = p.presence_penalty,
          .frequency_penalty = p.frequency_penalty,
          .penalty_last_n = p.penalty_last_n,
          .seed = p.seed};
}
}  // namespace

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size)
    : impl_(guard([&] {
        return std::make_unique<Impl>(Impl{mamba::sampling::Sampler(to_internal(params), vocab_size)});
      })) {}
Sampler::~Sampler() = default;
Sampler::Sampler(Sampler&& other) noexcept = default;
Sampler& Sampler::operator=(Sampler&& other) noexcept = default;
int32_t Sampler::sample(const float* logits, std::span<const int32_t> history) {
  return impl_->sampler.sample(logits, history);
}
void Sampler::reset(uint64_t seed) {
  impl_->sampler.reset(seed);
}

const char* stop_reason_name(StopReason reason) {
  return mamba::runtime::stop_reason_name(static_cast<mamba::runtime::StopReason>(reason));
}
GenerateResult to_public(const mamba::runtime::GenerateResult& r) {
  return {.tokens = r.tokens,
          .text = r.text,
          .reason = static_cast<StopReason>(r.reason),
          .stop_index = r.stop_index,
          .n_prompt = r.n_prompt,
          .prefill_seconds = r.prefill_seconds,
          .decode_seconds = r.decode_seconds};
}
mamba::runtime::GenerateParams to_internal(const GenerateParams& p) {
  return {.max_tokens = p.max_tokens,
          .stop = {.eos_ids = p.stop.eos_ids, .stop_strings = p.stop.stop_strings}};
}

Session::Session(const Model& model, const SessionOptions& options)
    : impl_(guard([&] {
        return std::make_unique<Impl>(
            Impl{&model, mamba::runtime::Session(unwrap(model), {.prefill_chunk = options.prefill_chunk,
                                                                 .history_limit = options.history_limit,
                                                                 .plan = options.plan.impl().plan})});
      })) {}
Session::~Session() = default;
Session::Session(Session&& other) noexcept = default;
Session& Session::operator=(Session&& other) noexcept = default;
Tensor Session::prefill(std::span<const int32_t> tokens) {
  return guard([&] { return wrap(impl_->session.prefill(tokens)); });
}
Tensor Session::decode(int32_t token) {
  return guard([&] { return wrap(impl_->session.decode(token)); });
}
GenerateResult Session::generate(std::span<const int32_t> prompt, const GenerateParams& params,
                                 Sampler& sampler, const Tokenizer* tokenizer,
                                 const TokenCallback& on_token) {
  return guard([&] {
    return to_public(impl_->session.generate(prompt, to_internal(params), sampler.impl().sampler,
                                             tokenizer ? tokenizer->impl().tok.get() : nullptr, on_token));
  });
}
void Session::reset() {
  impl_->session.reset();
}
void Session::save_state(const std::string& path) const {
  guard([&] { impl_->session.save_state(path); });
}
void Session::load_state(const std::string& path) {
  guard([&] { impl_->session.load_state(path); });
}
std::string Session::state_bytes() const {
  return guard([&] { return impl_->session.state_bytes(); });
}
void Session::load_state_bytes(std::string_view bytes) {
  guard([&] { impl_->session.load_state_bytes(bytes); });
}
Tensor Session::logits() const {
  return guard([&] { return wrap(impl_->session.logits()); });
}
const Model& Session::model() const {
  return *impl_->model;
}
int64_t Session::position() const {
  return impl_->session.position();
}

BatchResult generate_batch(std::span<Session> sessions, std::span<const std::vector<int32_t>> prompts,
                           const GenerateParams& params, std::span<Sampler> samplers) {
  // The internal batch runs over contiguous sessions and samplers: moved in, and back after.
  std::vector<mamba::runtime::Session> inner;
  std::vector<mamba::sampling::Sampler> inner_samplers;
  inner.reserve(sessions.size());
  for (Session& s : sessions) inner.push_back(std::move(s.impl().session));
  for (Sampler& s : samplers) inner_samplers.push_back(std::move(s.impl().sampler));
  struct Restore {
    std::span<Session> sessions;
    std::span<Sampler> samplers;
    std::vector<mamba::runtime::Session>& inner;
    std::vector<mamba::sampling::Sampler>& inner_samplers;
    ~Restore() {
      for (size_t i = 0; i < inner.size(); ++i) sessions[i].impl().session = std::move(inner[i]);
      for (size_t i = 0; i < inner_samplers.size(); ++i)
        samplers[i].impl().sampler = std::move(inner_samplers[i]);
    }
  } restore{sessions, samplers, inner, inner_samplers};
  return guard([&] {
    const mamba::runtime::BatchResult r =
        mamba::runtime::generate_batch(inner, prompts, to_internal(params), inner_samplers);
    BatchResult out;
    out.stacked = r.stacked;
    out.prefill_seconds = r.prefill_seconds;
    out.decode_seconds = r.decode_seconds;
    out.decode_steps = r.decode_steps;
    for (const auto& g : r.sequences) out.sequences.push_back(to_public(g));
    return out;
  });
}

}  // namespace mambacpp
