// The gradient and parameter exchange of a data-parallel training step (Trainer's, one process
// per rank). Gradients are packed into one flat buffer (FlatLayout order) and summed over the
// ranks in buckets; with ZeRO-1 the sum is a reduce-scatter instead, each rank updates its
// contiguous shard of the flattened parameters (AdamW over [begin, end)) and an all-gather
// brings every rank the updated parameters. Exchanges run after the backward pass, on the
// calling thread (the model's backward has no per-layer hook yet: docs/distributed.md).
#pragma once
#include <cstdint>
#include <utility>

#include "dist/comm.h"
#include "models/model.h"
#include "ops/exec.h"
#include "train/optimizer.h"

namespace mamba::train {

class DataParallel {
public:
  // `params`: the fp32 master weights (on their device); bucket_elems: f32 elements per bucket.
  DataParallel(dist::Communicator& comm, models::Model& params, bool zero1, int64_t bucket_elems);

  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }
  bool zero1() const { return zero1_; }
  // This rank's ZeRO-1 range of the flat parameters and the equal per-rank capacity.
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  int64_t capacity() const { return capacity_; }

  // Every rank's parameters <- rank 0's (after initialization or loading).
  void broadcast_params(ops::Exec& exec, models::Model& params);
  // Without ZeRO-1: grads <- Σ over ranks, bucket by bucket.
  void all_reduce_grads(ops::Exec& exec, models::Model& grads);
  // ZeRO-1: Σ over ranks of this rank's range of the flat gradient (1-D, end − begin elements).
  Tensor reduce_scatter_grads(ops::Exec& exec, models::Model& grads);
  // ZeRO-1: every rank's updated range -> the parameters of all ranks.
  void all_gather_params(ops::Exec& exec, models::Model& params);
  // ZeRO-1: the optimizer's moments of all ranks, flat ({m, v}, [size · capacity] each).
  std::pair<Tensor, Tensor> gather_moments(const AdamW& optimizer);

private:
  void pack(models::Model& model, Tensor& flat) const;
  void unpack(const Tensor& flat, models::Model& model) const;

  dist::Communicator& comm_;
  bool zero1_;
  int64_t bucket_elems_;
  FlatLayout layout_;
  int64_t begin_ = 0, end_ = 0, capacity_ = 0;
  Tensor flat_;  // [size · capacity] f32 on the parameters' device: gradients, then parameters
};

}  // namespace mamba::train
