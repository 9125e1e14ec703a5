// StepGraph (step_graph.h): eager warm-up, capture of Model::step_embedded, replays.
#include "runtime/step_graph.h"

#include "core/error.h"

namespace mamba::runtime {

using models::LayerState;
using models::Model;
using models::State;

namespace {

// The device buffers a step reads and writes in place: the graph bakes in their addresses.
std::vector<const void*> buffers_of(State& state) {
  std::vector<const void*> out{reinterpret_cast<const void*>(state.batch)};
  for (LayerState& l : state.layers) l.visit([&](const char*, Tensor& t) { out.push_back(t.raw()); });
  return out;
}

}  // namespace

StepGraph::StepGraph(const Model& model) : model_(&model), supported_(supported(model)) {}

bool StepGraph::supported(const Model& model) {
  if (model.device() != Device::cuda || !ops::device_available(Device::cuda)) return false;
  if (!model.config().family.empty()) return false;  // families step through Model::step_family
  for (int64_t i = 0; i < model.config().n_layer; ++i)
    if (model.config().layer_kind(i) == models::MixerKind::attention) return false;
  return true;
}

Tensor StepGraph::step(ops::Exec& exec, const Tensor& ids, State& state) {
  if (!supported_) return model_->step(exec, ids, state);
  const ops::ExecScope bind(exec);  // the embedding's copy into the graph's input, on exec's stream
  MAMBA_CHECK(ids.dim() == 1 && ids.size(0) == state.batch);
  const std::vector<const void*> buffers = buffers_of(state);
  if (graph_.ready() && buffers == bound_ && captured_on_ == &exec) {
    // The embedding (host-validated ids, a host-to-device copy) stays outside the graph.
    residual_.copy_from(model_->embed(exec, ids));
    graph_.replay();
    state.position += 1;
    ++replays_;
    return logits_.copy();  // the next replay rewrites logits_
  }
  if (buffers != warmed_ || (captured_on_ != nullptr && captured_on_ != &exec)) {  // one eager step first
    graph_.reset();
    bound_.clear();
    captured_on_ = nullptr;
    warmed_ = buffers;
    return model_->step(exec, ids, state);
  }
  residual_ = model_->embed(exec, ids);  // allocated outside the capture: the graph's input buffer
  graph_.begin_capture(exec, Device::cuda);
  try {
    logits_ = model_->step_embedded(exec, residual_, state);
    graph_.end_capture();
  } catch (...) {
    graph_.reset();
    throw;
  }
  // Nothing ran yet (state.position was advanced by the recording); the mixers must have updated
  // their state tensors in place, or replays would write buffers the state no longer holds.
  MAMBA_CHECK(buffers_of(state) == buffers, "a mixer replaced a state tensor during a graph capture");
  bound_ = buffers;
  captured_on_ = &exec;
  graph_.replay();
  ++replays_;
  return logits_.copy();
}

bool StepGraph::replay_as_is(int64_t n, State& state) {
  if (!graph_.ready() || buffers_of(state) != bound_) return false;
  for (int64_t i = 0; i < n; ++i) graph_.replay();  // on the capture's stream
  state.position += n;
  replays_ += n;
  return true;
}

}  // namespace mamba::runtime
