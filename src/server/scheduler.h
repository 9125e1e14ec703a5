// Continuous batching: one scheduler thread serves N slots over a shared model. Requests wait in
// a bounded queue, take a free slot at a step boundary (resuming from the prefix-state cache when
// a stored sequence is a prefix of their prompt), prefill the rest of the prompt in chunks, and
// then decode together with every other running stream: pure-SSM models keep the decoding slots'
// states as the leading rows of one stacked state and take one Model::step per token for all of
// them, models with attention step each slot (as runtime/batch.h). Each iteration prefills at most
// about one chunk's worth of tokens (several short prompts, or one chunk of a long one), then takes
// one decode step, so a long prompt never stalls the running streams for more than a chunk. A
// finished or cancelled stream leaves at the next step boundary; its state (prompt + reply) goes
// into the cache.
//
// The stacked state stays in place while streams come and go: a joining stream's state is copied
// into the next row, a leaving one's row is filled with the last row. On CUDA the step is a
// captured graph per batch bucket (1, 2, 4, 8, then multiples of 8; padding rows step a dummy
// token), so a step replays whatever the number of streams; the buffers only change when the
// stack grows (geometrically) or empties. Every slot runs on the scheduler's Exec: one stream.
//
//   Scheduler scheduler(model, tokenizer, eos_ids, {.slots = 8}, metrics);
//   auto job = std::make_shared<Job>(...);  scheduler.submit(job);
//   while (auto out = job->wait(...)) ...   // text and tokens as they come, then finished
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "models/model.h"
#include "runtime/step_graph.h"
#include "sampling/sampler.h"
#include "sampling/stop_criteria.h"
#include "server/metrics.h"
#include "server/prefix_cache.h"
#include "tokenizer/tokenizer.h"

namespace mamba::server {

using Clock = std::chrono::steady_clock;

enum class FinishReason { none, stop, length, cancelled, error };
const char* finish_reason_name(FinishReason reason);  // OpenAI's "stop" / "length"

// What a request asks of the scheduler (validated by the HTTP layer).
struct JobSpec {
  std::string id;               // "cmpl-..." / "chatcmpl-...", for the log line
  std::vector<int32_t> prompt;  // at least one token
  sampling::SamplingParams sampling;
  int64_t max_tokens = 16;      // >= 0
  sampling::StopCriteria stop;  // eos ids and stop strings
};

// Output taken by the consumer since its last take().
struct JobOutput {
  std::string text;             // newly visible text (stop strings never shown)
  std::vector<int32_t> tokens;  // newly generated ids
  bool finished = false;
  FinishReason reason = FinishReason::none;
  std::string error;                                                    // reason error
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;  // valid when finished
};

// One request in flight: written by the scheduler, read by the HTTP thread that owns it.
class Job {
public:
  explicit Job(JobSpec spec) : spec_(std::move(spec)), arrived_(Clock::now()) {}
  const JobSpec& spec() const { return spec_; }
  Clock::time_point arrived() const { return arrived_; }

  // Waits until there is new output or the job finished (or `timeout` passed: an empty output),
  // and takes it.
  JobOutput take(std::chrono::milliseconds timeout);
  // The client went away: the scheduler frees the slot at the next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_.load(); }

  // ---- Scheduler side. ----
  void push(int32_t token, const std::string& text);
  void finish(FinishReason reason, int64_t prompt_tokens, int64_t cached_tokens,
              const std::string& error = "");

private:
  JobSpec spec_;
  Clock::time_point arrived_;
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  JobOutput pending_;
  int64_t n_generated_ = 0;
};

struct SchedulerOptions {
  int slots = 4;                                // --parallel
  int max_queue = 64;                           // waiting requests beyond the slots; more are refused (429)
  int64_t prefill_chunk = 512;                  // tokens per prefill pass, and per scheduler iteration
  int64_t cache_bytes = 256ll << 20;            // prefix-state cache budget; 0: no cache
  int64_t cache_spill_bytes = 0;                // device models: host memory for states leaving that budget
  ops::KernelPlan plan = {};                    // kernel choices of every Exec (ops/exec.h)
  int64_t cache_every = 2048;                   // also snapshot long prompts every this many tokens (rounded
                                                // to a multiple of prefill_chunk)
  int64_t history_limit = 64;                   // sampler penalty window kept per sequence
  std::function<void(const std::string&)> log;  // one line per request; null: silent
};

class Scheduler {
public:
  Scheduler(const models::Model& model, const tok::Tokenizer* tokenizer, SchedulerOptions options,
            Metrics& metrics);
  ~Scheduler();  // cancels what is left and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  enum class Admission { accepted, queue_full, shutting_down };
  Admission submit(std::shared_ptr<Job> job);

  // Stops accepting; waits up to `grace` for queued and running jobs to finish, then cancels
  // the rest and stops the thread.
  void shutdown(std::chrono::milliseconds grace);

  MetricGauges gauges() const;

private:
  struct Slot;
  void loop();
  void admit();
  void start(Slot& slot, std::shared_ptr<Job> job);
  bool prefill_step();
  void decode_step();
  void sample(Slot& slot, int32_t token);  // records a drawn token: text, stop, metrics, the job
  void release(Slot& slot, FinishReason reason, const std::string& error = "");
  void unstack();
  void join(Slot& slot);
  void leave(Slot& slot, bool keep_state);
  void step_stacked();
  int64_t bucket(int64_t rows) const;

  const models::Model& model_;
  const tok::Tokenizer* tokenizer_;
  SchedulerOptions options_;
  Metrics& metrics_;
  PrefixCache cache_;
  bool stackable_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool accepting_ = true, stopping_ = false;
  std::atomic<int64_t> active_{0};

  // Scheduler thread only.
  std::vector<std::unique_ptr<Slot>> slots_;
  uint64_t admitted_ = 0;  // requests started so far: prefill goes first come, first served
  models::State stacked_;  // decoding slots' states as rows [0, rows_.size()); capacity stacked_.batch
  std::vector<int> rows_;  // slot index of each stacked row
  // The scheduler thread's Exec: the stacked decode and every slot's Session (prefill) run on it.
  std::unique_ptr<ops::Exec> exec_;
  bool graphs_;  // StepGraph::supported(model)
  std::vector<std::pair<int64_t, std::unique_ptr<runtime::StepGraph>>> graphs_by_rows_;  // per bucket
  std::thread thread_;
};

}  // namespace mamba::server
