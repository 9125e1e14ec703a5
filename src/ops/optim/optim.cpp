// Front of the optimizer ops (see optim.h): checks every tensor once and runs the CPU kernels
// (optim_cpu.cpp) or the CUDA ones through the kernel table.
#include "ops/optim/optim.h"

#include <cmath>
#include <cstring>
#include <initializer_list>

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/optim/optim_params.h"

namespace mamba::ops {

namespace {
void check_f32(const Tensor& t, const char* what) {
  MAMBA_CHECK(t.defined() && t.dtype() == DType::f32 && t.is_contiguous(),
              what << ": expected a contiguous f32 tensor");
}
}  // namespace

void adamw_update(Exec& exec, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s,
                  const Tensor* scalars) {
  static_assert(sizeof(AdamWScalars) == 6 * sizeof(double));
  const AdamWScalars* at = nullptr;
  if (scalars) {
    MAMBA_CHECK(scalars->dtype() == DType::i64 && scalars->numel() == 6 && scalars->is_contiguous() &&
                    scalars->device() == param.device(),
                "adamw_update: the scalars must be 6 i64 slots on the parameter's device");
    at = static_cast<const AdamWScalars*>(scalars->raw());
  }
  for (const Tensor* t : std::initializer_list<const Tensor*>{&param, &grad, &m, &v}) {
    check_f32(*t, "adamw_update");
    MAMBA_CHECK(t->numel() == param.numel() && t->device() == param.device(),
                "adamw_update: param " << shape_str(param.shape()) << " vs " << shape_str(t->shape())
                                       << " (all on one device)");
  }
  OpScope op_scope(exec, "adamw_update", param.device());
  if (param.device() == Device::cuda) return cuda_kernels().optim.adamw_update(param, grad, m, v, s, at);
  cpu::adamw_update(param, grad, m, v, at ? *at : s);
}

void write_adamw_scalars(Tensor& out, const AdamWScalars& s) {
  MAMBA_CHECK(out.dtype() == DType::i64 && out.numel() == 6 && out.is_contiguous());
  Tensor host = Tensor::empty({6}, DType::i64);
  std::memcpy(host.raw(), &s, sizeof(s));
  out.copy_from(host);
}

double sum_squares(Exec& exec, const Tensor& t) {
  check_f32(t, "sum_squares");
  OpScope op_scope(exec, "sum_squares", t.device());
  if (t.device() == Device::cuda) return cuda_kernels().optim.sum_squares(t);
  return cpu::sum_squares(t);
}

Tensor sum_squares_total(Exec& exec, const std::vector<Tensor>& ts) {
  const Device device = ts.empty() ? Device::cpu : ts.front().device();
  for (const Tensor& t : ts) {
    check_f32(t, "sum_squares_total");
    MAMBA_CHECK(t.device() == device, "sum_squares_total: tensors on different devices");
  }
  OpScope op_scope(exec, "sum_squares_total", device);
  if (device == Device::cuda) return cuda_kernels().optim.sum_squares_total(ts);
  double sum = 0;
  for (const Tensor& t : ts) sum += cpu::sum_squares(t);
  Tensor out = Tensor::empty({1}, DType::i64);
  *static_cast<double*>(out.raw()) = sum;
  return out;
}

void clip_scale_(Exec& exec, Tensor& t, const Tensor& total, double max_norm) {
  check_f32(t, "clip_scale_");
  MAMBA_CHECK(
      total.defined() && total.dtype() == DType::i64 && total.numel() == 1 && total.device() == t.device(),
      "clip_scale_: expected sum_squares_total's result on the tensor's device");
  if (max_norm <= 0) return;
  OpScope op_scope(exec, "clip_scale_", t.device());
  if (t.device() == Device::cuda) return cuda_kernels().optim.clip_scale_(t, total, max_norm);
  const double norm = std::sqrt(*static_cast<const double*>(total.raw()));
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) cpu::scale_(t, coef);
}

void scale_(Exec& exec, Tensor& t, double coef) {
  check_f32(t, "scale_");
  OpScope op_scope(exec, "scale_", t.device());
  if (t.device() == Device::cuda) return cuda_kernels().optim.scale_(t, coef);
  cpu::scale_(t, coef);
}

void zero_(Exec& exec, Tensor& t) {
  MAMBA_CHECK(t.defined() && t.is_contiguous(), "zero_: expected a contiguous tensor");
  OpScope op_scope(exec, "zero_", t.device());
  if (t.device() == Device::cuda) return cuda_kernels().optim.zero_(t);
  cpu::zero_(t);
}

}  // namespace mamba::ops
