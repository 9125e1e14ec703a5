// Optimizer kernels on CPU (see optim.h). The arithmetic is torch.optim.AdamW's, operation for
// operation, in double per element. The fronts (optim.cpp) have checked every tensor.
#include <cmath>
#include <cstring>

#include "ops/optim/optim_params.h"

namespace mamba::ops::cpu {

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s) {
  float* w = param.f32();
  const float* g = grad.f32();
  float* mp = m.f32();
  float* vp = v.f32();
  const double b1 = s.beta1, b2 = s.beta2;
  for (int64_t i = 0; i < param.numel(); ++i) {
    const double gi = g[i];
    const double wi = w[i] * s.decay;
    const double mi = mp[i] + (gi - mp[i]) * (1.0 - b1);
    const double vi = b2 * vp[i] + (1.0 - b2) * gi * gi;
    mp[i] = static_cast<float>(mi);
    vp[i] = static_cast<float>(vi);
    w[i] = static_cast<float>(wi - s.step_size * mi / (std::sqrt(vi) / s.bc2_sqrt + s.eps));
  }
}

double sum_squares(const Tensor& t) {
  const float* g = t.f32();
  double sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) sum += static_cast<double>(g[i]) * g[i];
  return sum;
}

void scale_(Tensor& t, double coef) {
  float* g = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) g[i] = static_cast<float>(g[i] * coef);
}

void zero_(Tensor& t) {
  if (t.nbytes() > 0) std::memset(t.raw(), 0, t.nbytes());
}

}  // namespace mamba::ops::cpu
