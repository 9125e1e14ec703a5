// Batched generation of sequences whose prompts have different lengths. Each prompt is prefilled
// alone (batch 1). Pure-SSM models then stack the states along the batch and decode every
// sequence with one Model::step per token: SSM layers never read the position, so rows may be at
// different positions. Models with attention layers keep one state per sequence and step them
// one by one: KV caches of different lengths would need padding plus a per-row mask in the
// attention op, which costs more than it saves at these batch sizes. Results equal batch-1 runs.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "models/model.h"
#include "runtime/session.h"

namespace mamba::runtime {

// True when every layer's state is independent of the position (no attention layer).
bool can_stack(const models::Model& model);
// Concatenates states along the batch (dim 0 of every tensor). Positions may differ; the
// result's `position` is meaningless (0): callers track each row's own.
models::State stack_states(std::span<const models::State* const> states);
// One row of a batched state as an independent batch-1 state at `position`.
models::State state_row(const models::State& state, int64_t row, int64_t position);

// ---- Rows of a stacked state kept in place (the server's decode batch; see server/scheduler.h).
// A zero state of `rows` rows with the tensors of `like` (any batch), on like's device.
models::State allocate_rows(const models::State& like, int64_t rows);
// Copies row `src_row` of `src` into row `dst_row` of `dst` (states of one model; may be the same
// state, rows distinct).
void copy_row(models::State& dst, int64_t dst_row, const models::State& src, int64_t src_row);
// The first `rows` rows of `stacked` as a state whose tensors are views into it: a step on the view
// updates `stacked` in place, and a captured graph of it stays bound to the same buffers.
models::State leading_rows(const models::State& stacked, int64_t rows);
// After a step on `view` (leading_rows of `stacked`): a tensor the step replaced instead of
// updating in place is copied into `stacked`'s rows.
void write_back_rows(models::State& stacked, const models::State& view);

struct BatchResult {
  std::vector<GenerateResult> sequences;  // one per session
  bool stacked = false;                   // decoded as one batch (else one sequence at a time)
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t decode_steps = 0;  // Model::step calls
};

// Called for each generated token of sequence `index`.
using BatchCallback = std::function<void(size_t index, int32_t token)>;

// Prefills prompts[i] into sessions[i] and generates up to params.max_tokens tokens for each,
// sampled by samplers[i]; a sequence stops at its own eos (stop strings are not matched here).
// Afterwards each session holds its sequence, every generated token consumed, as after
// Session::generate.
BatchResult generate_batch(std::span<Session> sessions, std::span<const std::vector<int32_t>> prompts,
                           const GenerateParams& params, std::span<sampling::Sampler> samplers,
                           const BatchCallback& on_token = {});

}  // namespace mamba::runtime
