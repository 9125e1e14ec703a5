// CPU normalizations (f32, one row per parallel work item).
#include "ops/norm/norm.h"

#include <cmath>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

namespace {
inline float silu(float v) {
  return v / (1.0f + std::exp(-v));
}
}  // namespace

Tensor rms_norm(Exec& exec, const Tensor& x_in, const Tensor& weight, float eps) {
  return rms_norm_gated(exec, x_in, Tensor(), weight, x_in.size(-1), false, eps);
}

Tensor layer_norm(Exec& exec, const Tensor& x_in, const Tensor& weight, const Tensor& bias, float eps) {
  OpScope op_scope(exec, "layer_norm", x_in.device());
  if (x_in.device() == Device::cuda) return cuda_kernels().norm.layer_norm(x_in, weight, bias, eps);
  const Tensor x = x_in.contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  MAMBA_CHECK(weight.numel() == n);
  Tensor y = Tensor::empty(x.shape());
  const float *xp = x.f32(), *wp = weight.f32(), *bp = bias.defined() ? bias.f32() : nullptr;
  float* yp = y.f32();
  parallel_for(rows, [&](int64_t r) {
    const float* xr = xp + r * n;
    float mean = 0.0f;
    for (int64_t i = 0; i < n; ++i) mean += xr[i];
    mean /= static_cast<float>(n);
    float var = 0.0f;
    for (int64_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const float rstd = 1.0f / std::sqrt(var / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; ++i) yp[r * n + i] = (xr[i] - mean) * rstd * wp[i] + (bp ? bp[i] : 0.0f);
  });
  return y;
}

namespace {
// residual += x in place (x may be undefined): the CPU half of the fused decode ops below.
void add_into(Tensor& residual, const Tensor& x) {
  MAMBA_CHECK(residual.is_contiguous() && residual.dtype() == DType::f32);
  if (!x.defined()) return;
  MAMBA_CHECK(x.shape() == residual.shape() && x.is_contiguous());
  float* rp = residual.f32();
  const float* xp = x.f32();
  const int64_t n = residual.numel();
  for (int64_t i = 0; i < n; ++i) rp[i] += xp[i];
}
}  // namespace

Tensor add_rms_norm_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight, float eps) {
  OpScope op_scope(exec, "add_rms_norm_", residual.device());
  if (residual.device() == Device::cuda)
    return cuda_kernels().norm.add_norm_(residual, x, weight, Tensor(), eps, false);
  add_into(residual, x);
  return rms_norm(exec, residual, weight, eps);
}

Tensor add_layer_norm_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, float eps) {
  OpScope op_scope(exec, "add_layer_norm_", residual.device());
  if (residual.device() == Device::cuda)
    return cuda_kernels().norm.add_norm_(residual, x, weight, bias, eps, true);
  add_into(residual, x);
  return layer_norm(exec, residual, weight, bias, eps);
}

Tensor rms_norm_gated(Exec& exec, const Tensor& x_in, const Tensor& z_in, const Tensor& weight,
                      int64_t group_size, bool norm_before_gate, float eps) {
  OpScope op_scope(exec, "rms_norm_gated", x_in.device());
  if (x_in.device() == Device::cuda)
    return cuda_kernels().norm.rms_norm_gated(x_in, z_in, weight, group_size, norm_before_gate, eps);
  const Tensor x = x_in.contiguous();
  const Tensor z = z_in.defined() ? z_in.contiguous() : Tensor();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  MAMBA_CHECK(weight.numel() == n && group_size > 0 && n % group_size == 0);
  MAMBA_CHECK(!z.defined() || z.shape() == x.shape());
  Tensor y = Tensor::empty(x.shape());
  const float *xp = x.f32(), *zp = z.defined() ? z.f32() : nullptr, *wp = weight.f32();
  float* yp = y.f32();
  const int64_t n_groups = n / group_size;
  parallel_for(rows * n_groups, [&](int64_t rg) {
    const int64_t off = rg * group_size, w_off = (rg % n_groups) * group_size;
    float* yr = yp + off;
    for (int64_t i = 0; i < group_size; ++i) {
      float v = xp[off + i];
      if (zp && !norm_before_gate) v *= silu(zp[off + i]);
      yr[i] = v;
    }
    float ss = 0.0f;
    for (int64_t i = 0; i < group_size; ++i) ss += yr[i] * yr[i];
    const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(group_size) + eps);
    for (int64_t i = 0; i < group_size; ++i) {
      float v = yr[i] * rstd * wp[w_off + i];
      if (zp && norm_before_gate) v *= silu(zp[off + i]);
      yr[i] = v;
    }
  });
  return y;
}

}  // namespace mamba::ops
