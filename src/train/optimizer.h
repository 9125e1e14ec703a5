// AdamW (PyTorch's torch.optim.AdamW update, decoupled weight decay) over a Model's parameters,
// global-norm gradient clipping and the learning-rate schedules. Weight decay skips the
// no-decay set (ParamRef::no_weight_decay: biases, norms, A_log, D, dt_bias; SPEC §1.1).
// Parameters, gradients and moments live on the model's device (CPU or CUDA; the element loops
// are ops/optim); the optimizer state is saved and loaded through the host.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/model.h"
#include "ops/optim/optim.h"

namespace mamba::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
};

enum class ScheduleKind { constant, cosine };

// lr(step), step counted from 0: linear warm-up lr·(step+1)/warmup_steps for the first
// warmup_steps steps, then constant, or cosine from lr down to min_lr at total_steps.
struct LrSchedule {
  ScheduleKind kind = ScheduleKind::cosine;
  double lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr = 0.0;

  double at(int64_t step) const;
};
ScheduleKind parse_schedule_kind(const std::string& name);  // "constant" | "cosine"; throws Error
const char* schedule_kind_name(ScheduleKind kind);

// Scales every gradient by max_norm / (norm + 1e-6) when the global L2 norm exceeds max_norm
// (torch.nn.utils.clip_grad_norm_); max_norm <= 0 only measures. Returns the norm before.
double clip_grad_norm(ops::Exec& exec, models::Model& grads, double max_norm);
// The same clipping without reading the norm back (no host sync on CUDA): returns the squared
// global norm as ops::sum_squares_total does (a 1-element i64 tensor on the gradients' device
// holding a double); the norm is its square root.
Tensor clip_grad_norm_sq(ops::Exec& exec, models::Model& grads, double max_norm);

// Sets every gradient to zero (before accumulating the next step's).
void zero_grads(ops::Exec& exec, models::Model& grads);

// A model's parameters laid end to end in visit order (a tied head once, as visit_params): the
// flat space ZeRO-1 shards and the data-parallel step packs its buckets in.
struct FlatLayout {
  struct Entry {
    std::string name;
    Shape shape;
    int64_t offset = 0, numel = 0;
    bool decay = true;
  };
  std::vector<Entry> entries;
  int64_t total = 0;

  static FlatLayout of(models::Model& params);
};

class AdamW {
public:
  // One (m, v) pair per parameter of `params`, named as the parameter, zero-initialized.
  AdamW(models::Model& params, const AdamWOptions& options);
  // ZeRO-1: the moments of the flat range [begin, end) of FlatLayout::of(params) only, held in
  // buffers of `capacity` >= end − begin elements (zero tail: the ranks' shards are equal for
  // all_gather). The file format (save/load) stays the unsharded one.
  AdamW(models::Model& params, const AdamWOptions& options, int64_t begin, int64_t end, int64_t capacity);

  // One update with learning rate lr of the parameters in the optimizer's range; `grads` is
  // params.new_grads() filled by backward. The caller then refreshes the model's derived
  // constants (Model::params_updated).
  void step(ops::Exec& exec, models::Model& params, models::Model& grads, double lr);
  // The same with the range's gradient given flat (1-D, end − begin elements): ZeRO-1's shard.
  void step_flat(ops::Exec& exec, models::Model& params, const Tensor& grad_shard, double lr);
  // A step recorded in a CUDA graph (the trainer's captured step): the update kernels read the
  // step's scalars (learning rate, bias corrections) from two small buffers on the moments' device,
  // which advance() rewrites before each replay; apply() queues the kernels. step() is then
  // advance + apply. Same bits as the host scalars.
  void use_device_scalars();
  bool device_scalars() const { return scalars_[0].defined(); }
  void advance(double lr);  // one more step: the count and the buffers (a copy from the host)
  void apply(ops::Exec& exec, models::Model& params, models::Model& grads);
  int64_t steps() const { return steps_; }
  const AdamWOptions& options() const { return options_; }
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  const FlatLayout& layout() const { return layout_; }
  // The moments of the range, flat ([capacity] f32 on the model's device): what ZeRO-1 gathers.
  const Tensor& flat_m() const { return m_; }
  const Tensor& flat_v() const { return v_; }

  // optimizer.safetensors: "exp_avg.<param>" and "exp_avg_sq.<param>" (f32, shaped as the
  // parameter), metadata "step", the options, and `metadata` (the trainer's RNG / data position).
  // Written atomically. save() needs the whole range; a sharded optimizer's caller gathers the
  // moments (flat, [>= layout().total]) and calls save_full.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  void save_full(const std::string& path, const std::map<std::string, std::string>& metadata,
                 const Tensor& m_full, const Tensor& v_full) const;
  // Restores the range's m, v and the step count; every parameter must be present with its
  // shape (Error naming the file otherwise). Returns the file's metadata.
  std::map<std::string, std::string> load(const std::string& path);

private:
  // A parameter's part [lo, hi) (of its flattened elements) inside the range.
  struct Slot {
    size_t entry = 0;
    int64_t lo = 0, hi = 0;
    Tensor m, v;  // 1-D views into m_ / v_
  };
  template <typename GradOf>
  void update(ops::Exec& exec, models::Model& params, double lr, const GradOf& grad_of,
              bool from_device = false);
  ops::AdamWScalars scalars_at(double lr, bool decay) const;  // for step steps_ (counted already)

  AdamWOptions options_;
  FlatLayout layout_;
  int64_t begin_ = 0, end_ = 0;
  Tensor m_, v_;
  std::vector<Slot> slots_;
  int64_t steps_ = 0;
  Tensor scalars_[2];  // device scalars: [0] decayed parameters, [1] the no-decay set
};

}  // namespace mamba::train
