// Backward of the normalizations on CPU. With n = v·rstd the normalized row and dn its incoming
// gradient, dv = rstd·(dn − n·mean(dn·n)) (RMSNorm) and rstd·(dn − mean(dn) − n·mean(dn·n))
// (LayerNorm). Rows run in parallel; weight gradients are column sums of a per-row product buffer.
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/norm/norm_params.h"

namespace mamba::ops::cpu {

namespace {

// out[c] += Σ_r m[r, c] (double accumulation).
void add_column_sums(const float* m, int64_t rows, int64_t cols, float* out) {
  parallel_for(cols, [&](int64_t c) {
    double acc = 0;
    for (int64_t r = 0; r < rows; ++r) acc += m[r * cols + c];
    out[c] += static_cast<float>(acc);
  });
}

}  // namespace

Tensor layer_norm_bwd(const NormParams& p, const Tensor& dy, const Tensor& x, const Tensor& weight,
                      Tensor& dweight, Tensor& dbias) {
  const int64_t n = p.n, rows = p.rows;
  const float eps = p.eps;
  Tensor dx = Tensor::empty(x.shape());
  std::vector<float> prod(static_cast<size_t>(rows * n));  // dy·n, summed into dweight
  const float *xp = x.f32(), *dyp = dy.f32(), *wp = weight.f32();
  float* dxp = dx.f32();
  parallel_for(rows, [&](int64_t r) {
    const float *xr = xp + r * n, *dyr = dyp + r * n;
    float mean = 0.0f;
    for (int64_t i = 0; i < n; ++i) mean += xr[i];
    mean /= static_cast<float>(n);
    float var = 0.0f;
    for (int64_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const float rstd = 1.0f / std::sqrt(var / static_cast<float>(n) + eps);
    float mean_dn = 0.0f, mean_dn_n = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const float xhat = (xr[i] - mean) * rstd, dn = dyr[i] * wp[i];
      prod[r * n + i] = dyr[i] * xhat;
      mean_dn += dn;
      mean_dn_n += dn * xhat;
    }
    mean_dn /= static_cast<float>(n);
    mean_dn_n /= static_cast<float>(n);
    for (int64_t i = 0; i < n; ++i) {
      const float xhat = (xr[i] - mean) * rstd;
      dxp[r * n + i] = rstd * (dyr[i] * wp[i] - mean_dn - xhat * mean_dn_n);
    }
  });
  add_column_sums(prod.data(), rows, n, dweight.f32());
  if (dbias.defined()) add_column_sums(dyp, rows, n, dbias.f32());
  return dx;
}

Tensor rms_norm_gated_bwd(const NormParams& p, const Tensor& dy, const Tensor& x, const Tensor& z,
                          const Tensor& weight, Tensor& dweight, Tensor& dz) {
  const int64_t n = p.n, rows = p.rows, group_size = p.group_size;
  const bool norm_before_gate = p.norm_before_gate;
  const float eps = p.eps;
  Tensor dx = Tensor::empty(x.shape());
  if (z.defined()) dz = Tensor::empty(x.shape());
  std::vector<float> prod(static_cast<size_t>(rows * n));  // (dy·gate)·n, summed into dweight
  const float *xp = x.f32(), *zp = z.defined() ? z.f32() : nullptr, *dyp = dy.f32(), *wp = weight.f32();
  float *dxp = dx.f32(), *dzp = z.defined() ? dz.f32() : nullptr;
  const int64_t n_groups = n / group_size;
  parallel_for(rows * n_groups, [&](int64_t rg) {
    const int64_t off = rg * group_size, w_off = (rg % n_groups) * group_size;
    // v: the normalized input (x, or x·silu(z) when gating first).
    auto v_at = [&](int64_t i) {
      return zp && !norm_before_gate ? xp[off + i] * silu(zp[off + i]) : xp[off + i];
    };
    float ss = 0.0f;
    for (int64_t i = 0; i < group_size; ++i) ss += v_at(i) * v_at(i);
    const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(group_size) + eps);
    float mean_dn_n = 0.0f;
    for (int64_t i = 0; i < group_size; ++i) {
      const float nv = v_at(i) * rstd;
      float dnw = dyp[off + i];  // gradient of n·w
      if (zp && norm_before_gate) {
        dzp[off + i] = dnw * nv * wp[w_off + i] * silu_grad(zp[off + i]);
        dnw *= silu(zp[off + i]);
      }
      prod[off + i] = dnw * nv;
      mean_dn_n += dnw * wp[w_off + i] * nv;
    }
    mean_dn_n /= static_cast<float>(group_size);
    for (int64_t i = 0; i < group_size; ++i) {
      const float nv = v_at(i) * rstd;
      const float dnw = zp && norm_before_gate ? dyp[off + i] * silu(zp[off + i]) : dyp[off + i];
      const float dv = rstd * (dnw * wp[w_off + i] - nv * mean_dn_n);
      if (zp && !norm_before_gate) {
        dxp[off + i] = dv * silu(zp[off + i]);
        dzp[off + i] = dv * xp[off + i] * silu_grad(zp[off + i]);
      } else {
        dxp[off + i] = dv;
      }
    }
  });
  add_column_sums(prod.data(), rows, n, dweight.f32());
  return dx;
}

}  // namespace mamba::ops::cpu
