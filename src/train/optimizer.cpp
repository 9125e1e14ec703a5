// AdamW, clipping and schedules (see optimizer.h). The update follows torch.optim.AdamW
// operation for operation, in double per element, so hand-computed numbers match it; the element
// loops are ops (ops/optim), which run where the tensors live, so this file stays device-free.
#include "train/optimizer.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "io/safetensors.h"
#include "ops/optim/optim.h"

namespace mamba::train {
namespace {

constexpr double pi = 3.14159265358979323846;

std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == ScheduleKind::constant) return lr;
  const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(span));
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(pi * progress));
}

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "constant") return ScheduleKind::constant;
  if (name == "cosine") return ScheduleKind::cosine;
  throw_error(ErrorCode::invalid_argument, "schedule: expected constant or cosine, found '", name, "'");
}

const char* schedule_kind_name(ScheduleKind kind) {
  return kind == ScheduleKind::constant ? "constant" : "cosine";
}

double clip_grad_norm(ops::Exec& exec, models::Model& grads, double max_norm) {
  const Tensor total = clip_grad_norm_sq(exec, grads, max_norm).to(Device::cpu);
  return std::sqrt(*static_cast<const double*>(total.raw()));
}

// The sum of squares and the scale stay where the gradients live: on CUDA one host sync per
// parameter (each norm read back) became none.
Tensor clip_grad_norm_sq(ops::Exec& exec, models::Model& grads, double max_norm) {
  std::vector<Tensor> list;
  grads.visit_params([&](const models::ParamRef& p) { list.push_back(*p.tensor); });
  const Tensor total = ops::sum_squares_total(exec, list);
  if (max_norm > 0)
    grads.visit_params(
        [&](const models::ParamRef& p) { ops::clip_scale_(exec, *p.tensor, total, max_norm); });
  return total;
}

void zero_grads(ops::Exec& exec, models::Model& grads) {
  grads.visit_params([&](const models::ParamRef& p) { ops::zero_(exec, *p.tensor); });
}

AdamW::AdamW(models::Model& params, const AdamWOptions& options) : options_(options) {
  // The moments live beside their parameter (on the model's device), in f32.
  params.visit_params([&](const models::ParamRef& p) {
    const Device device = p.tensor->device();
    slots_.push_back({p.name, Tensor::zeros(p.shape, DType::f32, device),
                      Tensor::zeros(p.shape, DType::f32, device), !p.no_weight_decay});
  });
}

// torch.optim.AdamW, single-tensor path: p ← p·(1 − lr·wd); m ← m + (g − m)(1 − β1);
// v ← β2·v + (1 − β2)·g²; p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps).
void AdamW::step(ops::Exec& exec, models::Model& params, models::Model& grads, double lr) {
  ++steps_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double step_size = lr / (1.0 - std::pow(b1, static_cast<double>(steps_)));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(steps_)));
  std::vector<Tensor> g_list;
  grads.visit_params([&](const models::ParamRef& p) { g_list.push_back(*p.tensor); });
  MAMBA_CHECK(g_list.size() == slots_.size(), "grads do not match the optimizer's parameters");
  size_t k = 0;
  params.visit_params([&](const models::ParamRef& p) {
    Slot& s = slots_[k];
    const Tensor& grad = g_list[k++];
    MAMBA_CHECK(s.name == p.name && grad.numel() == p.tensor->numel(), s.name << " vs " << p.name);
    ops::AdamWScalars sc;
    sc.beta1 = b1;
    sc.beta2 = b2;
    sc.eps = options_.eps;
    sc.decay = s.decay ? 1.0 - lr * options_.weight_decay : 1.0;
    sc.step_size = step_size;
    sc.bc2_sqrt = bc2_sqrt;
    ops::adamw_update(exec, *p.tensor, grad, s.m, s.v, sc);
  });
}

void AdamW::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Slot& s : slots_) {
    tensors.emplace_back("exp_avg." + s.name, s.m);
    tensors.emplace_back("exp_avg_sq." + s.name, s.v);
  }
  std::map<std::string, std::string> meta = metadata;
  meta["step"] = std::to_string(steps_);
  meta["beta1"] = exact(options_.beta1);
  meta["beta2"] = exact(options_.beta2);
  meta["eps"] = exact(options_.eps);
  meta["weight_decay"] = exact(options_.weight_decay);
  io::save_safetensors(path, tensors, meta);
}

std::map<std::string, std::string> AdamW::load(const std::string& path) {
  const io::SafeTensors st = io::SafeTensors::open(path);
  for (Slot& s : slots_) {
    for (auto [prefix, dst] : {std::pair<const char*, Tensor*>{"exp_avg.", &s.m}, {"exp_avg_sq.", &s.v}}) {
      const std::string name = prefix + s.name;
      if (!st.contains(name))
        throw_error(ErrorCode::not_found, path, ": missing optimizer tensor '", name, "'");
      const Device device = dst->device();  // saved and loaded through the host
      *dst = st.get_f32(name, s.m.shape()).to(device);
    }
  }
  const auto& meta = st.metadata();
  const auto it = meta.find("step");
  if (it == meta.end()) throw_error(ErrorCode::parse, path, ": metadata has no 'step'");
  try {
    steps_ = std::stoll(it->second);
  } catch (const std::exception&) {
    throw_error(ErrorCode::parse, path, ": metadata 'step' expected an integer, found '", it->second, "'");
  }
  return meta;
}

}  // namespace mamba::train
