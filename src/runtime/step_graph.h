// Decode through a captured device graph (a decode strategy of the runtime): Model::step for one
// fixed batch recorded once (Model::step_embedded on the Exec's stream) and replayed every token, so a step
// costs one graph launch instead of ~10 kernel launches per layer (batch-1 decode of a large model is
// launch-bound otherwise).
//
//   StepGraph graph(model);                            // model on cuda, no attention layers
//   for (...) logits = graph.step(exec, ids, state);  // same contract and bits as model.step
//
// The first step on a state's buffers runs eagerly (it warms the allocator and the cuBLAS
// handles), the second captures and replays, later ones replay. The graph is bound to the
// state's buffers: a step with another State, or one whose tensors were replaced (loaded,
// copied, restacked), or one on another Exec, runs eagerly once and captures again (replays run
// on the capturing Exec's stream). Models with attention layers (their
// KV cache grows) and CPU models always run Model::step.
#pragma once
#include <vector>

#include "models/model.h"
#include "ops/device.h"

namespace mamba::runtime {

class StepGraph {
public:
  explicit StepGraph(const models::Model& model);

  // Whether `model` can decode through a graph (on cuda, no attention layers).
  static bool supported(const models::Model& model);

  // Model::step: ids [batch] (host or device, i32/i64) -> logits [batch, vocab_padded] (a fresh
  // tensor), state advanced by one token.
  Tensor step(ops::Exec& exec, const Tensor& ids, models::State& state);

  // Steps run by replaying the graph so far (tests, bench).
  int64_t replays() const { return replays_; }
  // Queues `n` more replays of the captured step on its input as it stands (the state advances by n
  // tokens of the last embedded input; the logits are not read): the graph's own device time per
  // step, without the host's part of a step (bench). False when no graph is captured.
  bool replay_as_is(int64_t n, models::State& state);

private:
  const models::Model* model_;
  const ops::Exec* captured_on_ = nullptr;  // the Exec whose stream the graph replays on
  bool supported_;
  ops::DeviceGraph graph_;
  std::vector<const void*> warmed_;  // state buffers of the last eager step
  std::vector<const void*> bound_;   // state buffers the graph was captured on
  Tensor residual_;                  // [batch, d_model] graph input: the embedded tokens
  Tensor logits_;                    // [batch, vocab_padded] graph output, rewritten by each replay
  int64_t replays_ = 0;
};

}  // namespace mamba::runtime
