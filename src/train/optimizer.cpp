// AdamW, clipping and schedules (see optimizer.h). The update follows torch.optim.AdamW
// operation for operation, in double per element, so hand-computed numbers match it; the element
// loops are ops (ops/optim), which run where the tensors live, so this file stays device-free.
#include "train/optimizer.h"

#include <algorithm>
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

FlatLayout FlatLayout::of(models::Model& params) {
  FlatLayout l;
  params.visit_params([&](const models::ParamRef& p) {
    const int64_t n = p.tensor->numel();
    l.entries.push_back({p.name, p.shape, l.total, n, !p.no_weight_decay});
    l.total += n;
  });
  return l;
}

AdamW::AdamW(models::Model& params, const AdamWOptions& options) : AdamW(params, options, 0, -1, -1) {}

AdamW::AdamW(models::Model& params, const AdamWOptions& options, int64_t begin, int64_t end, int64_t capacity)
    : options_(options), layout_(FlatLayout::of(params)) {
  begin_ = begin;
  end_ = end < 0 ? layout_.total : end;
  if (capacity < 0) capacity = end_ - begin_;
  MAMBA_CHECK(0 <= begin_ && begin_ <= end_ && end_ <= layout_.total && capacity >= end_ - begin_);
  // The moments live beside the parameters (on the model's device), in f32.
  Device device = Device::cpu;
  params.visit_params([&](const models::ParamRef& p) { device = p.tensor->device(); });
  m_ = Tensor::zeros({std::max<int64_t>(capacity, 1)}, DType::f32, device);
  v_ = Tensor::zeros({std::max<int64_t>(capacity, 1)}, DType::f32, device);
  for (size_t i = 0; i < layout_.entries.size(); ++i) {
    const FlatLayout::Entry& e = layout_.entries[i];
    const int64_t lo = std::max(begin_, e.offset), hi = std::min(end_, e.offset + e.numel);
    if (lo >= hi) continue;
    slots_.push_back({i, lo - e.offset, hi - e.offset, m_.slice(0, lo - begin_, hi - begin_),
                      v_.slice(0, lo - begin_, hi - begin_)});
  }
}

// torch.optim.AdamW, single-tensor path: p ← p·(1 − lr·wd); m ← m + (g − m)(1 − β1);
// v ← β2·v + (1 − β2)·g²; p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps).
ops::AdamWScalars AdamW::scalars_at(double lr, bool decay) const {
  ops::AdamWScalars sc;
  sc.beta1 = options_.beta1;
  sc.beta2 = options_.beta2;
  sc.eps = options_.eps;
  sc.decay = decay ? 1.0 - lr * options_.weight_decay : 1.0;
  sc.step_size = lr / (1.0 - std::pow(options_.beta1, static_cast<double>(steps_)));
  sc.bc2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, static_cast<double>(steps_)));
  return sc;
}

// One step's kernels; from_device: the scalars come from the device buffers (advance wrote them
// and counted the step).
template <typename GradOf>
void AdamW::update(ops::Exec& exec, models::Model& params, double lr, const GradOf& grad_of,
                   bool from_device) {
  if (!from_device) ++steps_;
  const ops::AdamWScalars decayed = scalars_at(lr, true), kept = scalars_at(lr, false);
  std::vector<Tensor> p_list;
  params.visit_params([&](const models::ParamRef& p) { p_list.push_back(*p.tensor); });
  MAMBA_CHECK(p_list.size() == layout_.entries.size(), "params do not match the optimizer's");
  for (Slot& s : slots_) {
    const FlatLayout::Entry& e = layout_.entries[s.entry];
    MAMBA_CHECK(p_list[s.entry].numel() == e.numel, e.name);
    Tensor param = p_list[s.entry].view({e.numel}).slice(0, s.lo, s.hi);
    const Tensor grad = grad_of(s);
    ops::adamw_update(exec, param, grad, s.m, s.v, e.decay ? decayed : kept,
                      from_device ? &scalars_[e.decay ? 0 : 1] : nullptr);
  }
}

void AdamW::use_device_scalars() {
  for (Tensor& t : scalars_) t = Tensor::zeros({6}, DType::i64, m_.device());
}

void AdamW::advance(double lr) {
  MAMBA_CHECK(device_scalars(), "AdamW::advance without use_device_scalars");
  ++steps_;
  ops::write_adamw_scalars(scalars_[0], scalars_at(lr, true));
  ops::write_adamw_scalars(scalars_[1], scalars_at(lr, false));
}

void AdamW::apply(ops::Exec& exec, models::Model& params, models::Model& grads) {
  MAMBA_CHECK(device_scalars(), "AdamW::apply without use_device_scalars");
  std::vector<Tensor> g_list;
  grads.visit_params([&](const models::ParamRef& p) { g_list.push_back(*p.tensor); });
  MAMBA_CHECK(g_list.size() == layout_.entries.size(), "grads do not match the optimizer's parameters");
  update(
      exec, params, 0.0,
      [&](const Slot& s) {
        const Tensor& g = g_list[s.entry];
        return g.view({g.numel()}).slice(0, s.lo, s.hi);
      },
      true);
}

void AdamW::step(ops::Exec& exec, models::Model& params, models::Model& grads, double lr) {
  if (device_scalars()) {
    advance(lr);
    return apply(exec, params, grads);
  }
  std::vector<Tensor> g_list;
  grads.visit_params([&](const models::ParamRef& p) { g_list.push_back(*p.tensor); });
  MAMBA_CHECK(g_list.size() == layout_.entries.size(), "grads do not match the optimizer's parameters");
  update(exec, params, lr, [&](const Slot& s) {
    const Tensor& g = g_list[s.entry];
    return g.view({g.numel()}).slice(0, s.lo, s.hi);
  });
}

void AdamW::step_flat(ops::Exec& exec, models::Model& params, const Tensor& grad_shard, double lr) {
  MAMBA_CHECK(grad_shard.numel() >= end_ - begin_, "gradient shard smaller than the optimizer's range");
  update(exec, params, lr, [&](const Slot& s) {
    const int64_t off = layout_.entries[s.entry].offset + s.lo - begin_;
    return grad_shard.slice(0, off, off + (s.hi - s.lo));
  });
}

void AdamW::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  MAMBA_CHECK(begin_ == 0 && end_ == layout_.total, "a sharded optimizer saves through save_full");
  save_full(path, metadata, m_, v_);
}

void AdamW::save_full(const std::string& path, const std::map<std::string, std::string>& metadata,
                      const Tensor& m_full, const Tensor& v_full) const {
  MAMBA_CHECK(m_full.numel() >= layout_.total && v_full.numel() >= layout_.total);
  const Tensor m = m_full.to(Device::cpu), v = v_full.to(Device::cpu);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const FlatLayout::Entry& e : layout_.entries) {
    tensors.emplace_back("exp_avg." + e.name, m.slice(0, e.offset, e.offset + e.numel).view(e.shape));
    tensors.emplace_back("exp_avg_sq." + e.name, v.slice(0, e.offset, e.offset + e.numel).view(e.shape));
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
  for (const FlatLayout::Entry& e : layout_.entries)
    for (const char* prefix : {"exp_avg.", "exp_avg_sq."})
      if (!st.contains(prefix + e.name))
        throw_error(ErrorCode::not_found, path, ": missing optimizer tensor '", prefix + e.name, "'");
  for (Slot& s : slots_) {
    const FlatLayout::Entry& e = layout_.entries[s.entry];
    for (auto [prefix, dst] : {std::pair<const char*, Tensor*>{"exp_avg.", &s.m}, {"exp_avg_sq.", &s.v}}) {
      const Tensor host = st.get_f32(prefix + e.name, e.shape);  // saved and loaded through the host
      dst->copy_from(host.contiguous().view({e.numel}).slice(0, s.lo, s.hi).to(dst->device()));
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
