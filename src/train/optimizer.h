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

class AdamW {
public:
  // One (m, v) pair per parameter of `params`, named as the parameter, zero-initialized.
  AdamW(models::Model& params, const AdamWOptions& options);

  // One update with learning rate lr; `grads` is params.new_grads() filled by backward.
  // The caller then refreshes the model's derived constants (Model::params_updated).
  void step(ops::Exec& exec, models::Model& params, models::Model& grads, double lr);
  int64_t steps() const { return steps_; }
  const AdamWOptions& options() const { return options_; }

  // optimizer.safetensors: "exp_avg.<param>" and "exp_avg_sq.<param>" (f32), metadata "step",
  // the options, and `metadata` (the trainer's RNG / data position). Written atomically.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  // Restores m, v and the step count; every parameter must be present with its shape (Error
  // naming the file otherwise). Returns the file's metadata.
  std::map<std::string, std::string> load(const std::string& path);

private:
  struct Slot {
    std::string name;
    Tensor m, v;  // shaped like the parameter
    bool decay = true;
  };
  AdamWOptions options_;
  std::vector<Slot> slots_;
  int64_t steps_ = 0;
};

}  // namespace mamba::train
