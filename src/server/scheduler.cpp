// Continuous batching (see scheduler.h).
#include "server/scheduler.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <bit>
#include <cstdio>
#include <optional>

#include "core/error.h"
#include "core/parallel.h"
#include "runtime/batch.h"
#include "runtime/session.h"

namespace mamba::server {
namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The generated text as it may be shown (as Session::generate shows it): characters completed by
// the stream decoder, and bytes that could begin a stop string held back.
class VisibleText {
public:
  VisibleText(const tok::Tokenizer* tokenizer, const sampling::StopCriteria& stop) : stop_(&stop) {
    if (tokenizer) decoder_.emplace(*tokenizer);
  }
  std::string push(int32_t token, bool hidden, bool final) {
    if (!decoder_) return {};
    if (!hidden) text_ += decoder_->push(token);
    if (final) text_ += decoder_->flush();
    const sampling::StopCheck c = stop_->check(text_, search_from_);
    search_from_ = c.text_end;
    stopped_ = c.stopped;
    const size_t end = (final && !c.stopped) ? text_.size() : c.text_end;
    std::string visible = text_.substr(shown_, end - shown_);
    shown_ = end;
    return visible;
  }
  bool stopped() const { return stopped_; }

private:
  const sampling::StopCriteria* stop_;
  std::optional<tok::StreamDecoder> decoder_;
  std::string text_;
  size_t shown_ = 0, search_from_ = 0;
  bool stopped_ = false;
};

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::stop:
      return "stop";
    case FinishReason::length:
      return "length";
    case FinishReason::cancelled:
      return "cancelled";
    case FinishReason::error:
      return "error";
    case FinishReason::none:
      break;
  }
  return "none";
}

// ---- Job ----

JobOutput Job::take(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return pending_.finished || !pending_.tokens.empty(); });
  JobOutput out = std::move(pending_);
  pending_ = JobOutput{};
  if (out.finished) {  // later takes see the end again
    pending_.finished = true;
    pending_.reason = out.reason;
    pending_.error = out.error;
  }
  return out;
}

void Job::push(int32_t token, const std::string& text) {
  {
    std::lock_guard lock(mutex_);
    pending_.tokens.push_back(token);
    pending_.text += text;
    ++n_generated_;
  }
  cv_.notify_all();
}

void Job::finish(FinishReason reason, int64_t prompt_tokens, int64_t cached_tokens,
                 const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    pending_.finished = true;
    pending_.reason = reason;
    pending_.error = error;
    pending_.prompt_tokens = prompt_tokens;
    pending_.cached_tokens = cached_tokens;
    pending_.completion_tokens = n_generated_;
  }
  cv_.notify_all();
}

// ---- Slot ----

struct Scheduler::Slot {
  int index = 0;
  std::shared_ptr<Job> job;
  std::optional<runtime::Session> session;
  std::optional<sampling::Sampler> sampler;
  std::optional<VisibleText> text;
  std::vector<int32_t> generated;
  uint64_t admitted = 0;  // arrival order of the slot's request (prefill is first come, first served)
  int64_t prefilled = 0;  // prompt tokens consumed, cached ones included
  int64_t cached = 0;
  int64_t position = 0;  // the sequence's position while its state is a stacked row
  int row = -1;          // its row in the stacked state; -1: its state is the session's
  bool decoding = false;
  FinishReason finishing = FinishReason::none;  // set when the last token was sampled
  Clock::time_point first_token, last_token;

  bool busy() const { return job != nullptr; }
};

Scheduler::Scheduler(const models::Model& model, const tok::Tokenizer* tokenizer, SchedulerOptions options,
                     Metrics& metrics)
    : model_(model),
      tokenizer_(tokenizer),
      options_(std::move(options)),
      metrics_(metrics),
      cache_(options_.cache_bytes, model.device() == Device::cpu ? 0 : options_.cache_spill_bytes),
      stackable_(runtime::can_stack(model)),
      graphs_(runtime::StepGraph::supported(model)) {
  if (options_.slots < 1)
    throw_error(ErrorCode::invalid_argument, "--parallel: expected at least 1 slot, found ", options_.slots);
  if (options_.prefill_chunk < 1)
    throw_error(ErrorCode::invalid_argument, "prefill chunk: expected at least 1, found ",
                options_.prefill_chunk);
  options_.cache_every =
      std::max<int64_t>(1, options_.cache_every / options_.prefill_chunk) * options_.prefill_chunk;
  for (int i = 0; i < options_.slots; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->index = i;
  }
  exec_ = std::make_unique<ops::Exec>(model_.device(), options_.plan);
  cache_.defer_eviction(true);  // trimmed when idle (loop), or when far over its budget
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  shutdown(std::chrono::milliseconds(0));
}

Scheduler::Admission Scheduler::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) return Admission::shutting_down;
    const int64_t free_slots = options_.slots - active_.load();
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue + std::max<int64_t>(free_slots, 0))
      return Admission::queue_full;
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  return Admission::accepted;
}

void Scheduler::shutdown(std::chrono::milliseconds grace) {
  std::unique_lock lock(mutex_);
  accepting_ = false;
  if (!thread_.joinable()) return;
  cv_.wait_for(lock, grace, [&] { return queue_.empty() && active_.load() == 0; });
  stopping_ = true;
  lock.unlock();
  cv_.notify_all();
  thread_.join();
}

MetricGauges Scheduler::gauges() const {
  MetricGauges g;
  {
    std::lock_guard lock(mutex_);
    g.queue_depth = static_cast<int64_t>(queue_.size());
  }
  g.active_slots = active_.load();
  g.slots = options_.slots;
  g.cache_entries = cache_.entries();
  g.cache_bytes = cache_.bytes();
  g.cache_budget_bytes = cache_.budget_bytes();
  g.cache_spilled_bytes = cache_.spilled_bytes();
  g.cache_spill_budget_bytes = cache_.spill_budget_bytes();
  return g;
}

void Scheduler::loop() {
  const ops::ExecScope bind(*exec_);  // every copy and step of this thread runs on its stream
  bool worked = false;                // since the last return of freed memory to the system
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (worked && queue_.empty() && active_.load() == 0 && !stopping_) {
        // Idle: hand glibc's freed arenas back to the system, so resident memory returns to idle plus
        // the prefix cache after a burst of requests (docs/server_bench.md measured +1.6 GB without).
        lock.unlock();
        cache_.trim();  // spills and evictions wait for a pause (prefix_cache.h)
#ifdef __GLIBC__
        malloc_trim(0);
#endif
        worked = false;
        lock.lock();
      }
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || active_.load() > 0; });
      if (stopping_) break;
    }
    worked = true;
    try {
      admit();
      const bool prefilled = prefill_step();
      decode_step();
      (void)prefilled;
      if (cache_.bytes() > 2 * cache_.budget_bytes()) cache_.trim();  // never idle: bounded anyway
    } catch (const std::exception& e) {
      // A failure inside a step (out of memory, a bug surfaced as an Error): fail the running
      // requests, keep serving.
      unstack();
      for (auto& slot : slots_)
        if (slot->busy()) release(*slot, FinishReason::error, e.what());
    }
    cv_.notify_all();  // shutdown() waits for an empty scheduler
  }
  unstack();
  for (auto& slot : slots_)
    if (slot->busy()) release(*slot, FinishReason::cancelled);
  std::lock_guard lock(mutex_);
  for (auto& job : queue_) {
    job->finish(FinishReason::cancelled, static_cast<int64_t>(job->spec().prompt.size()), 0);
    metrics_.requests_cancelled++;
  }
  queue_.clear();
}

void Scheduler::admit() {
  for (auto& slot : slots_) {
    if (slot->busy()) continue;
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(mutex_);
      while (!queue_.empty() && !job) {
        job = std::move(queue_.front());
        queue_.pop_front();
        if (job->cancelled()) {
          job->finish(FinishReason::cancelled, static_cast<int64_t>(job->spec().prompt.size()), 0);
          metrics_.requests_cancelled++;
          job.reset();
        }
      }
      if (!job) return;
      ++active_;
    }
    start(*slot, std::move(job));
  }
}

void Scheduler::start(Slot& slot, std::shared_ptr<Job> job) {
  const JobSpec& spec = job->spec();
  slot.job = std::move(job);
  slot.admitted = admitted_++;
  slot.session.emplace(model_, runtime::SessionOptions{.prefill_chunk = options_.prefill_chunk,
                                                       .history_limit = options_.history_limit,
                                                       .plan = options_.plan,
                                                       .exec = exec_.get()});
  slot.sampler.emplace(spec.sampling, static_cast<int32_t>(model_.config().vocab_size));
  slot.text.emplace(tokenizer_, spec.stop);
  slot.generated.clear();
  slot.prefilled = slot.cached = 0;
  slot.decoding = false;
  slot.finishing = FinishReason::none;
  if (options_.cache_bytes > 0) {
    if (auto hit = cache_.lookup(spec.prompt)) {
      slot.session->session_state() = std::move(hit->state);
      slot.prefilled = slot.cached = hit->n_tokens;
      metrics_.cache_hits++;
    } else {
      metrics_.cache_misses++;
    }
  }
  metrics_.prompt_tokens += spec.prompt.size();
  metrics_.cached_prompt_tokens += static_cast<uint64_t>(slot.cached);
}

// The prefill work of one iteration, first come first served (the oldest request reaches its
// first token first, as vLLM schedules, instead of every prompt finishing together): chunks of the
// earliest-admitted prefilling slots until about one chunk's worth of tokens is done, a pass
// counting as at least kMinPassTokens (its fixed cost, a kernel launch per op per layer, is about
// that of a pass over so many tokens). So a burst of short prompts takes a few iterations rather
// than one each, and no iteration holds the decoding streams for much more than one chunk. Chunk
// boundaries fall on multiples of prefill_chunk from the sequence's start, as Session::generate's
// do, so a cache miss computes exactly what a lone Session would. Returns whether any prefill work
// was waiting.
bool Scheduler::prefill_step() {
  constexpr int64_t kMinPassTokens = 64;
  std::vector<Slot*> waiting;
  for (const auto& candidate : slots_)
    if (candidate->busy() && !candidate->decoding && !candidate->job->cancelled())
      waiting.push_back(candidate.get());
  std::sort(waiting.begin(), waiting.end(),
            [](const Slot* a, const Slot* b) { return a->admitted < b->admitted; });
  int64_t budget = options_.prefill_chunk;
  for (Slot* next : waiting) {
    if (budget <= 0) break;
    Slot& slot = *next;
    const std::vector<int32_t>& prompt = slot.job->spec().prompt;
    const int64_t total = static_cast<int64_t>(prompt.size());
    if (slot.prefilled < total) {
      const int64_t chunk = options_.prefill_chunk;
      const int64_t end = std::min(total, (slot.prefilled / chunk + 1) * chunk);
      slot.session->prefill(std::span(prompt).subspan(static_cast<size_t>(slot.prefilled),
                                                      static_cast<size_t>(end - slot.prefilled)));
      budget -= std::max(end - slot.prefilled, kMinPassTokens);
      slot.prefilled = end;
      if (options_.cache_bytes > 0 && end < total && end % options_.cache_every == 0)
        cache_.insert(std::span(prompt).first(static_cast<size_t>(end)), slot.session->session_state());
    }
    if (slot.prefilled == total) {
      if (options_.cache_bytes > 0 && slot.cached < total)
        cache_.insert(prompt, slot.session->session_state());
      slot.decoding = true;
      slot.position = slot.session->position();
      if (slot.job->spec().max_tokens <= 0) release(slot, FinishReason::length);
    }
  }
  return !waiting.empty();
}

// Samples the slot's next token from its logits and hands the visible text to the job.
void Scheduler::sample(Slot& slot, int32_t token) {
  const JobSpec& spec = slot.job->spec();
  slot.generated.push_back(token);
  const bool eos = spec.stop.is_eos(token);
  const bool last = static_cast<int64_t>(slot.generated.size()) >= spec.max_tokens;
  const std::string visible = slot.text->push(token, /*hidden=*/eos, /*final=*/eos || last);
  if (eos || slot.text->stopped())
    slot.finishing = FinishReason::stop;
  else if (last)
    slot.finishing = FinishReason::length;
  const Clock::time_point now = Clock::now();
  if (slot.generated.size() == 1) {
    slot.first_token = now;
    metrics_.time_to_first_token.observe(seconds_between(slot.job->arrived(), now));
  } else {
    metrics_.inter_token.observe(seconds_between(slot.last_token, now));
  }
  slot.last_token = now;
  metrics_.completion_tokens++;
  slot.job->push(token, visible);
}

// Writes the stacked rows back to their slots' sessions and frees the stack (and its graphs).
void Scheduler::unstack() {
  for (size_t row = 0; row < rows_.size(); ++row) {
    Slot& slot = *slots_[static_cast<size_t>(rows_[row])];
    slot.session->session_state().state =
        runtime::state_row(stacked_, static_cast<int64_t>(row), slot.position);
    slot.row = -1;
  }
  rows_.clear();
  stacked_ = models::State();
  graphs_by_rows_.clear();
}

// Rows stepped for `rows` decoding streams: with graphs a bucket (1, 2, 4, 8, then multiples of
// 8), so that a handful of captured graphs serve every count; exactly `rows` otherwise.
int64_t Scheduler::bucket(int64_t rows) const {
  if (!graphs_) return rows;
  if (rows <= 8) return static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(rows)));
  return (rows + 7) / 8 * 8;
}

// A decoding slot's state becomes the next stacked row. A full stack grows geometrically (new
// buffers: the captured graphs go).
void Scheduler::join(Slot& slot) {
  models::State& own = slot.session->session_state().state;
  const int64_t row = static_cast<int64_t>(rows_.size());
  const int64_t need = bucket(row + 1);
  if (stacked_.layers.empty()) {
    stacked_ = runtime::allocate_rows(own, need);
  } else if (stacked_.batch < need) {
    const int64_t cap = std::max(need, bucket(std::min<int64_t>(2 * stacked_.batch, options_.slots)));
    models::State grown = runtime::allocate_rows(stacked_, cap);
    for (int64_t r = 0; r < row; ++r) runtime::copy_row(grown, r, stacked_, r);
    stacked_ = std::move(grown);
    graphs_by_rows_.clear();
  }
  runtime::copy_row(stacked_, row, own, 0);
  own = models::State();  // the row holds it now (a state can be many MB)
  slot.row = static_cast<int>(row);
  rows_.push_back(slot.index);
}

// The slot's row leaves the stack (its state copied back to the session when `keep_state`); the
// last row moves into its place, so the rows stay the leading ones.
void Scheduler::leave(Slot& slot, bool keep_state) {
  const int row = slot.row, last = static_cast<int>(rows_.size()) - 1;
  MAMBA_CHECK(row >= 0 && row <= last && rows_[static_cast<size_t>(row)] == slot.index);
  if (keep_state) slot.session->session_state().state = runtime::state_row(stacked_, row, slot.position);
  if (row != last) {
    runtime::copy_row(stacked_, row, stacked_, last);
    rows_[static_cast<size_t>(row)] = rows_[static_cast<size_t>(last)];
    slots_[static_cast<size_t>(rows_[static_cast<size_t>(row)])]->row = row;
  }
  rows_.pop_back();
  slot.row = -1;
}

// One Model::step over the stacked rows (a bucket's leading rows; padding rows step token 0 and
// are ignored), each row's logits handed to its slot's session.
void Scheduler::step_stacked() {
  const int64_t n = static_cast<int64_t>(rows_.size()), rows = bucket(n);
  Tensor ids = Tensor::zeros({rows}, DType::i32);  // [rows]
  for (int64_t r = 0; r < n; ++r) {
    Slot& slot = *slots_[static_cast<size_t>(rows_[static_cast<size_t>(r)])];
    ids.data<int32_t>()[r] = slot.generated.back();
    slot.session->remember(slot.generated.back());
  }
  auto graph = std::find_if(graphs_by_rows_.begin(), graphs_by_rows_.end(),
                            [&](const auto& g) { return g.first == rows; });
  if (graph == graphs_by_rows_.end()) {
    graphs_by_rows_.emplace_back(rows, std::make_unique<runtime::StepGraph>(model_));
    graph = std::prev(graphs_by_rows_.end());
  }
  models::State view = runtime::leading_rows(stacked_, rows);
  Tensor logits = graph->second->step(*exec_, ids, view);  // [rows, vocab_padded]
  runtime::write_back_rows(stacked_, view);
  if (logits.device() != Device::cpu) logits = logits.to(Device::cpu);
  for (int64_t r = 0; r < n; ++r) {
    Slot& slot = *slots_[static_cast<size_t>(rows_[static_cast<size_t>(r)])];
    // A view of the step's logits (fresh every step, never written): a finishing slot's row is
    // copied out below so that nothing kept holds the whole batch's buffer.
    slot.session->session_state().logits = logits.slice(0, r, r + 1);  // [1, vocab_padded]
    ++slot.position;
  }
}

void Scheduler::decode_step() {
  // Cancelled slots leave first (a stacked row is simply dropped).
  for (auto& slot : slots_)
    if (slot->busy() && slot->job->cancelled()) {
      if (slot->row >= 0) leave(*slot, /*keep_state=*/false);
      release(*slot, FinishReason::cancelled);
    }

  std::vector<int> decoding;
  for (auto& slot : slots_)
    if (slot->busy() && slot->decoding) decoding.push_back(slot->index);
  if (decoding.empty()) {
    if (!stacked_.layers.empty()) unstack();  // every row has left: free the stack and its graphs
    return;
  }
  // The tokens are drawn in parallel (each slot has its own sampler and logits; with 128 streams
  // and a 50K vocabulary the draws alone cost milliseconds per step), the bookkeeping in order.
  std::vector<int32_t> tokens(decoding.size());
  parallel_for(static_cast<int64_t>(decoding.size()), [&](int64_t k) {
    Slot& slot = *slots_[static_cast<size_t>(decoding[static_cast<size_t>(k)])];
    runtime::Session& session = *slot.session;
    tokens[static_cast<size_t>(k)] =
        slot.sampler->sample(session.session_state().logits.f32(), session.history());
  });
  for (size_t k = 0; k < decoding.size(); ++k) sample(*slots_[static_cast<size_t>(decoding[k])], tokens[k]);

  // Consume the sampled tokens (the final one too: the state then covers prompt + reply).
  if (!stackable_) {
    for (int i : decoding) {
      Slot& slot = *slots_[static_cast<size_t>(i)];
      slot.session->decode(slot.generated.back());
    }
  } else {
    for (int i : decoding)
      if (slots_[static_cast<size_t>(i)]->row < 0) join(*slots_[static_cast<size_t>(i)]);
    step_stacked();
  }

  for (int i : decoding) {
    Slot& slot = *slots_[static_cast<size_t>(i)];
    if (slot.finishing == FinishReason::none) continue;
    if (slot.row >= 0) {
      runtime::SessionState& st = slot.session->session_state();
      st.logits = st.logits.copy();
      leave(slot, /*keep_state=*/true);
    }
    release(slot, slot.finishing);
  }
}

void Scheduler::release(Slot& slot, FinishReason reason, const std::string& error) {
  const JobSpec& spec = slot.job->spec();
  const int64_t n_prompt = static_cast<int64_t>(spec.prompt.size());
  if (reason == FinishReason::stop || reason == FinishReason::length) {
    if (options_.cache_bytes > 0 && !slot.generated.empty()) {
      std::vector<int32_t> key = spec.prompt;
      key.insert(key.end(), slot.generated.begin(), slot.generated.end());
      cache_.insert(key, slot.session->session_state());
    }
    metrics_.requests_finished++;
  } else if (reason == FinishReason::cancelled) {
    metrics_.requests_cancelled++;
  }
  if (options_.log) {
    const Clock::time_point now = Clock::now();
    const size_t n_out = slot.generated.size();
    const double ttft = n_out > 0 ? seconds_between(slot.job->arrived(), slot.first_token) : 0.0;
    const double decode = n_out > 1 ? seconds_between(slot.first_token, now) : 0.0;
    char line[512];
    std::snprintf(
        line, sizeof line,
        "%s: prompt %lld tokens (cached %lld), generated %zu, %s, ttft %.1f ms, %.1f tok/s, total %.3f s%s%s",
        spec.id.c_str(), static_cast<long long>(n_prompt), static_cast<long long>(slot.cached), n_out,
        finish_reason_name(reason), ttft * 1e3, decode > 0 ? static_cast<double>(n_out - 1) / decode : 0.0,
        seconds_between(slot.job->arrived(), now), error.empty() ? "" : ": ", error.c_str());
    options_.log(line);
  }
  // The job hears of its end last: by then the log line is written and the slot counted free.
  std::shared_ptr<Job> job = std::move(slot.job);
  const int64_t cached = slot.cached;
  slot.text.reset();
  slot.session.reset();
  slot.sampler.reset();
  slot.generated.clear();
  slot.decoding = false;
  slot.finishing = FinishReason::none;
  --active_;
  job->finish(reason, n_prompt, cached, error);
}

}  // namespace mamba::server
