// CPU normalizations (f32, one row or group per parallel work item). The front (norm.cpp) has
// checked the shapes and made the inputs contiguous before these run.
#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/norm/norm_params.h"

namespace mamba::ops::cpu {

Tensor layer_norm(const NormParams& p, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const int64_t n = p.n, rows = p.rows;
  const float eps = p.eps;
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

void add_into(Tensor& residual, const Tensor& x) {
  float* rp = residual.f32();
  const float* xp = x.f32();
  const int64_t n = residual.numel();
  for (int64_t i = 0; i < n; ++i) rp[i] += xp[i];
}

namespace {

// y = x·silu(z) (y may be x): the gate as its own loop over plain arithmetic, so it vectorizes.
void gate(float* y, const float* x, const float* __restrict z, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * silu_fast(z[i]);
}

}  // namespace

Tensor rms_norm_gated(const NormParams& p, const Tensor& x, const Tensor& z, const Tensor& weight) {
  const int64_t n = p.n, rows = p.rows, group_size = p.group_size;
  const bool norm_before_gate = p.norm_before_gate;
  const float eps = p.eps;
  Tensor y = Tensor::empty(x.shape());
  const float *xp = x.f32(), *zp = z.defined() ? z.f32() : nullptr, *wp = weight.f32();
  float* yp = y.f32();
  const int64_t n_groups = n / group_size;
  parallel_for(rows * n_groups, [&](int64_t rg) {
    const int64_t off = rg * group_size, w_off = (rg % n_groups) * group_size;
    float* yr = yp + off;
    const float* zr = zp ? zp + off : nullptr;
    if (zr && !norm_before_gate)
      gate(yr, xp + off, zr, group_size);
    else
      std::copy(xp + off, xp + off + group_size, yr);
    float ss = 0.0f;
    for (int64_t i = 0; i < group_size; ++i) ss += yr[i] * yr[i];
    const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(group_size) + eps);
    for (int64_t i = 0; i < group_size; ++i) yr[i] = yr[i] * rstd * wp[w_off + i];
    if (zr && norm_before_gate) gate(yr, yr, zr, group_size);
  });
  return y;
}

}  // namespace mamba::ops::cpu
