// The trainer's captured step (TrainDevice::graph, CUDA, one process): per batch shape, the first
// step runs eagerly (it warms the caching allocator and the cuBLAS handles), the second records the
// device part in a CUDA graph (ops::DeviceGraph; the allocator gives the recording a private pool,
// so the activations' addresses stay the graph's) and replays it, later ones only replay. Between
// replays the host writes the graph's inputs in place: the batch's ids, targets and embeddings,
// the answer count, and AdamW's scalars (AdamW::advance). What the step re-derives from the
// parameters is written in place too (models::assign_derived), so a replay reads the updated
// values. Every kernel is the eager step's with the same arguments: the same bits.
//
// Host work that cannot be recorded stays outside: drawing and checking the batch, the embedding
// lookup (it validates ids on the host), the final read of {loss, correct, norm²}.
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "ops/optim/optim.h"
#include "train/trainer.h"

namespace mamba::train {

namespace {

constexpr size_t kMaxGraphs = 8;  // batch shapes kept (a curriculum's lengths); the oldest goes

}  // namespace

bool Trainer::graph_eligible() const {
  return where_.graph && !graph_off_ && where_.device == Device::cuda && !dp_ &&
         ops::device_available(Device::cuda);
}

Trainer::CapturedStep& Trainer::captured_for(const Shape& shape) {
  for (auto& g : captured_)
    if (g->shape == shape) {
      g->last_used = step_;
      return *g;
    }
  if (captured_.size() >= kMaxGraphs) {  // drop the least recently used shape (its pool with it)
    auto oldest = captured_.begin();
    for (auto it = captured_.begin(); it != captured_.end(); ++it)
      if ((*it)->last_used < (*oldest)->last_used) oldest = it;
    captured_.erase(oldest);
  }
  auto g = std::make_unique<CapturedStep>();
  g->shape = shape;
  g->ids = Tensor::empty(shape, DType::i64, Device::cuda);
  g->targets = Tensor::empty(shape, DType::i64, Device::cuda);
  g->counts = Tensor::empty({2}, DType::i64, Device::cuda);
  g->stats = Tensor::empty({3}, DType::i64, Device::cuda);
  g->last_used = step_;
  captured_.push_back(std::move(g));
  return *captured_.back();
}

void Trainer::device_part(CapturedStep& g) {
  ops::Exec& exec = *exec_;
  zero_grads(exec, *grads_);
  const models::Model& net = compute_ ? *compute_ : *model_;
  const Tensor logits = net.forward_train_embedded(exec, g.ids, g.embedded, g.acts);
  Tensor dlogits;
  const Tensor ce = ops::cross_entropy_train_device(exec, logits, g.targets, g.counts, dlogits);
  net.backward(exec, dlogits, g.acts, *grads_);
  const Tensor norm_sq = clip_grad_norm_sq(exec, *grads_, config_.clip);
  optimizer_->apply(exec, *model_, *grads_);
  model_->params_updated(exec);
  refresh_compute_model();
  g.stats.slice(0, 0, 2).copy_from(ce);
  g.stats.slice(0, 2, 3).copy_from(norm_sq);
}

void Trainer::launch_graph_step(const Tensor& ids, const Tensor& targets) {
  ops::Exec& exec = *exec_;
  const ops::ExecScope bind(exec);
  const models::Model& net = compute_ ? *compute_ : *model_;
  CapturedStep& g = captured_for(ids.shape());
  // The inputs, in place (the graph reads these buffers). The targets are checked as the loss op
  // checks them; the embedding validates the ids on the host.
  const int64_t vocab = net.config().vocab_padded;
  int64_t counted = 0;
  const int64_t* tgt = targets.data<int64_t>();
  for (int64_t i = 0; i < targets.numel(); ++i) {
    if (tgt[i] >= vocab)
      throw_error(ErrorCode::out_of_range, "target ", tgt[i], " at position ", i,
                  " is outside the vocabulary [0, ", vocab, ")");
    counted += tgt[i] >= 0;
  }
  g.ids.copy_from(ids);
  g.targets.copy_from(targets);
  Tensor counts = Tensor::empty({2}, DType::i64);
  const double c[2] = {static_cast<double>(counted), counted > 0 ? 1.0 / static_cast<double>(counted) : 0.0};
  std::memcpy(counts.raw(), c, sizeof(c));
  g.counts.copy_from(counts);
  const Tensor embedded = net.embed(exec, ids);
  if (!g.embedded.defined()) g.embedded = Tensor::empty(embedded.shape(), DType::f32, Device::cuda);
  g.embedded.copy_from(embedded);

  if (g.graph.ready()) {
    g.graph.replay();
    ++graph_replays_;
  } else if (g.runs == 0) {
    device_part(g);
    ++g.runs;
  } else {
    bool recorded = false;
    try {
      g.graph.begin_capture(exec, Device::cuda);
      device_part(g);
      g.graph.end_capture();
      recorded = true;
    } catch (const Error& e) {
      g.graph.reset();
      graph_off_ = true;  // the model has an op that cannot be recorded: eager steps from now on
      std::fprintf(stderr, "train: the step could not be recorded in a CUDA graph (%s); running it eagerly\n",
                   e.what());
    }
    if (recorded) {
      g.graph.replay();
      ++graph_replays_;
    } else {
      device_part(g);  // nothing of the failed recording ran
    }
  }
  launched_ = &g;
}

std::array<double, 3> Trainer::finish_graph_step() {
  MAMBA_CHECK(launched_ != nullptr);
  const ops::ExecScope bind(*exec_);
  // Synchronizes with this run's stream: the step's time includes its device work.
  const Tensor host = launched_->stats.to(Device::cpu);
  launched_ = nullptr;
  std::array<double, 3> out{};
  std::memcpy(out.data(), host.raw(), sizeof(double) * 3);
  return out;
}

}  // namespace mamba::train
