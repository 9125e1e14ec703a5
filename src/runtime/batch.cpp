// Batched generation (see batch.h): states stacked along the batch for pure-SSM models, one
// state per sequence otherwise. A finished row is copied back to its session at once; later steps
// still compute it (a fixed batch shape) but its outputs are ignored.
#include "runtime/batch.h"

#include <chrono>
#include <string>

#include "core/error.h"

namespace mamba::runtime {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Tensors of one state by "<layer>.<name>", in visit order (the same for every state of a model).
std::vector<std::pair<std::string, Tensor>> tensors_of(const models::State& state) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < state.layers.size(); ++i) {
    models::LayerState layer = state.layers[i];  // shallow copy: visit() needs a mutable object
    layer.visit([&](const char* name, Tensor& t) { out.emplace_back(std::to_string(i) + "." + name, t); });
  }
  return out;
}

// Rebuilds a state of `like`'s structure from tensors in tensors_of() order.
models::State with_tensors(const models::State& like, const std::vector<Tensor>& tensors, int64_t batch) {
  models::State s;
  s.batch = batch;
  s.layers = like.layers;
  size_t k = 0;
  for (models::LayerState& layer : s.layers) layer.visit([&](const char*, Tensor& t) { t = tensors[k++]; });
  MAMBA_CHECK(k == tensors.size());
  return s;
}

// Stacked decoding: one Model::step per token for the whole batch.
void decode_stacked(std::span<Session> sessions, const GenerateParams& params,
                    std::span<sampling::Sampler> samplers, const BatchCallback& on_token, BatchResult& r) {
  const models::Model& model = sessions[0].model();
  ops::Exec& exec = sessions[0].exec();  // the rows' work was waited for (their logits are on the host)
  const ops::ExecScope bind(exec);
  const int64_t batch = static_cast<int64_t>(sessions.size()), vocab = model.config().vocab_padded;
  std::vector<const models::State*> states;
  std::vector<int64_t> position;
  Tensor logits = Tensor::empty({batch, vocab});  // [batch, vocab_padded]
  for (int64_t b = 0; b < batch; ++b) {
    states.push_back(&sessions[b].session_state().state);
    position.push_back(sessions[b].position());
    logits.select(0, b).copy_from(sessions[b].logits());
  }
  models::State state = stack_states(states);
  StepGraph graph(model);                           // the stacked state keeps its buffers: one capture
  Tensor ids = Tensor::zeros({batch}, DType::i32);  // [batch]; finished rows keep their last token
  std::vector<bool> done(static_cast<size_t>(batch), params.max_tokens <= 0);
  int64_t active = params.max_tokens > 0 ? batch : 0;
  for (int64_t i = 0; active > 0; ++i) {
    std::vector<int64_t> finishing;
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) continue;
      const int32_t token = samplers[b].sample(logits.select(0, b).f32(), sessions[b].history());
      r.sequences[b].tokens.push_back(token);
      sessions[b].remember(token);
      ids.data<int32_t>()[b] = token;
      if (on_token) on_token(static_cast<size_t>(b), token);
      const bool eos = params.stop.is_eos(token);
      if (eos) r.sequences[b].reason = StopReason::eos;
      if (eos || i + 1 == params.max_tokens) finishing.push_back(b);
    }
    logits = graph.step(exec, ids, state);  // a captured CUDA graph where the model allows
    if (logits.device() != Device::cpu) logits = logits.to(Device::cpu);  // the samplers read the host
    ++r.decode_steps;
    for (int64_t b = 0; b < batch; ++b) position[b] += done[b] ? 0 : 1;
    for (int64_t b : finishing) {  // the final token is consumed: hand the row back
      SessionState& s = sessions[b].session_state();
      s.state = state_row(state, b, position[b]);
      s.logits = logits.slice(0, b, b + 1).copy();
      done[b] = true;
      --active;
    }
  }
}

}  // namespace

bool can_stack(const models::Model& model) {
  for (int64_t i = 0; i < model.config().n_layer; ++i)
    if (model.config().layer_kind(i) == models::MixerKind::attention) return false;
  return true;
}

models::State stack_states(std::span<const models::State* const> states) {
  MAMBA_CHECK(!states.empty());
  int64_t batch = 0;
  for (const models::State* s : states) batch += s->batch;
  models::State stacked = allocate_rows(*states[0], batch);
  int64_t row = 0;
  for (const models::State* s : states)
    for (int64_t r = 0; r < s->batch; ++r) copy_row(stacked, row++, *s, r);  // names checked by copy_row
  return stacked;
}

models::State state_row(const models::State& state, int64_t row, int64_t position) {
  std::vector<Tensor> rows;
  for (const auto& [name, t] : tensors_of(state)) rows.push_back(t.slice(0, row, row + 1).copy());
  models::State s = with_tensors(state, rows, 1);
  s.position = position;
  return s;
}

models::State allocate_rows(const models::State& like, int64_t rows) {
  std::vector<Tensor> out;
  for (const auto& [name, t] : tensors_of(like)) {
    Shape shape = t.shape();
    shape[0] = rows;
    out.push_back(Tensor::zeros(shape, t.dtype(), t.device()));
  }
  return with_tensors(like, out, rows);
}

void copy_row(models::State& dst, int64_t dst_row, const models::State& src, int64_t src_row) {
  const auto to = tensors_of(dst), from = tensors_of(src);
  MAMBA_CHECK(to.size() == from.size(), "states of different models");
  for (size_t k = 0; k < to.size(); ++k) {
    MAMBA_CHECK(to[k].first == from[k].first, to[k].first << " vs " << from[k].first);
    Tensor row = to[k].second.slice(0, dst_row, dst_row + 1);
    row.copy_from(from[k].second.slice(0, src_row, src_row + 1));
  }
}

models::State leading_rows(const models::State& stacked, int64_t rows) {
  MAMBA_CHECK(rows >= 1 && rows <= stacked.batch, "leading_rows: " << rows << " of " << stacked.batch);
  std::vector<Tensor> views;
  for (const auto& [name, t] : tensors_of(stacked)) views.push_back(t.slice(0, 0, rows));
  return with_tensors(stacked, views, rows);
}

void write_back_rows(models::State& stacked, const models::State& view) {
  const auto to = tensors_of(stacked), from = tensors_of(view);
  MAMBA_CHECK(to.size() == from.size(), "states of different models");
  for (size_t k = 0; k < to.size(); ++k) {
    Tensor rows = to[k].second.slice(0, 0, view.batch);
    if (rows.raw() != from[k].second.raw()) rows.copy_from(from[k].second);
  }
}

BatchResult generate_batch(std::span<Session> sessions, std::span<const std::vector<int32_t>> prompts,
                           const GenerateParams& params, std::span<sampling::Sampler> samplers,
                           const BatchCallback& on_token) {
  if (sessions.empty() || prompts.size() != sessions.size() || samplers.size() != sessions.size())
    throw_error(ErrorCode::invalid_argument, "generate_batch: ", sessions.size(), " sessions, ",
                prompts.size(), " prompts and ", samplers.size(),
                " samplers (expected the same number, at least 1)");
  const models::Model& model = sessions[0].model();
  for (const Session& s : sessions)
    if (&s.model() != &model)
      throw_error(ErrorCode::invalid_argument, "generate_batch: sessions of different models");
  BatchResult r;
  r.sequences.resize(sessions.size());
  r.stacked = can_stack(model);
  if (!r.stacked) {  // one sequence at a time: same tokens as batch 1, by construction
    for (size_t b = 0; b < sessions.size(); ++b) {
      r.sequences[b] = sessions[b].generate(prompts[b], params, samplers[b], nullptr,
                                            [&](int32_t token, std::string_view) {
                                              if (on_token) on_token(b, token);
                                              return true;
                                            });
      r.prefill_seconds += r.sequences[b].prefill_seconds;
      r.decode_seconds += r.sequences[b].decode_seconds;
      r.decode_steps += static_cast<int64_t>(r.sequences[b].tokens.size());
    }
    return r;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (size_t b = 0; b < sessions.size(); ++b) {
    r.sequences[b].n_prompt = static_cast<int64_t>(prompts[b].size());
    sessions[b].prefill(prompts[b]);
    if (params.max_tokens > 0 && !sessions[b].logits().defined())
      throw_error(ErrorCode::invalid_argument, "generate_batch: sequence ", b,
                  " has an empty prompt and empty state");
  }
  r.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  decode_stacked(sessions, params, samplers, on_token, r);
  r.decode_seconds = seconds_since(t0);
  return r;
}

}  // namespace mamba::runtime
