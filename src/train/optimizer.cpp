// AdamW, clipping and schedules (see optimizer.h). The update follows torch.optim.AdamW
// operation for operation, in double per element, so hand-computed numbers match it.
#include "train/optimizer.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "io/safetensors.h"

namespace mamba::train {
namespace {

constexpr double pi = 3.14159265358979323846;

void require_cpu(const Tensor& t, const std::string& name) {
  if (t.device() != Device::cpu)
    throw_error(ErrorCode::unsupported, "optimizer: parameter '", name,
                "' is not on the CPU (training runs on the CPU)");
}

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

double clip_grad_norm(models::Model& grads, double max_norm) {
  double sum_sq = 0;
  grads.visit_params([&](const models::ParamRef& p) {
    require_cpu(*p.tensor, p.name);
    const float* g = p.tensor->f32();
    for (int64_t i = 0; i < p.tensor->numel(); ++i) sum_sq += static_cast<double>(g[i]) * g[i];
  });
  const double norm = std::sqrt(sum_sq);
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && coef < 1.0) {
    grads.visit_params([&](const models::ParamRef& p) {
      float* g = p.tensor->f32();
      for (int64_t i = 0; i < p.tensor->numel(); ++i) g[i] = static_cast<float>(g[i] * coef);
    });
  }
  return norm;
}

void zero_grads(models::Model& grads) {
  grads.visit_params([](const models::ParamRef& p) { p.tensor->zero(); });
}

AdamW::AdamW(models::Model& params, const AdamWOptions& options) : options_(options) {
  params.visit_params([&](const models::ParamRef& p) {
    require_cpu(*p.tensor, p.name);
    slots_.push_back({p.name, Tensor::zeros(p.shape), Tensor::zeros(p.shape), !p.no_weight_decay});
  });
}

// torch.optim.AdamW, single-tensor path: p ← p·(1 − lr·wd); m ← m + (g − m)(1 − β1);
// v ← β2·v + (1 − β2)·g²; p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps).
void AdamW::step(models::Model& params, models::Model& grads, double lr) {
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
    require_cpu(*p.tensor, p.name);
    float* w = p.tensor->f32();
    const float* g = grad.f32();
    float* m = s.m.f32();
    float* v = s.v.f32();
    const double decay = s.decay ? 1.0 - lr * options_.weight_decay : 1.0;
    for (int64_t i = 0; i < p.tensor->numel(); ++i) {
      const double gi = g[i];
      const double wi = w[i] * decay;
      const double mi = m[i] + (gi - m[i]) * (1.0 - b1);
      const double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
      m[i] = static_cast<float>(mi);
      v[i] = static_cast<float>(vi);
      w[i] = static_cast<float>(wi - step_size * mi / (std::sqrt(vi) / bc2_sqrt + options_.eps));
    }
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
      *dst = st.get_f32(name, s.m.shape());
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
