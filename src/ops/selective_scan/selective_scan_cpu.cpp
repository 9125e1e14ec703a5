// CPU selective scan: parallel over (batch, channel), sequential over time, vectorized over d_state.
// The front (selective_scan.cpp) has checked every tensor before this runs.
#include <cmath>

#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/selective_scan/selective_scan_params.h"

namespace mamba::ops::cpu {

Tensor selective_scan_fwd(const SelectiveScanParams& p, const SelectiveScanArgs& a, Tensor& state) {
  const int64_t batch = p.batch, seq_len = p.seq_len, d_inner = p.d_inner, d_state = p.d_state;
  const Shape y_shape = {batch, seq_len, d_inner};
  const bool into = a.y_into.defined() && a.y_into.is_contiguous() && a.y_into.dtype() == DType::f32 &&
                    a.y_into.device() == Device::cpu && a.y_into.shape() == y_shape;
  Tensor y = into ? a.y_into : Tensor::empty(y_shape);
  const float *up = a.u.f32(), *dp = a.delta.f32(), *dbp = a.delta_bias.f32(), *Ap = a.A.f32();
  const float *Bp = a.B.f32(), *Cp = a.C.f32(), *Dp = a.D.f32(), *zp = a.z.defined() ? a.z.f32() : nullptr;
  float *yp = y.f32(), *sp = state.f32();
  const int64_t Bb = a.B.stride(0), Bt = a.B.stride(1), Cb = a.C.stride(0), Ct = a.C.stride(1);
  const int64_t zb = zp ? a.z.stride(0) : 0, zt = zp ? a.z.stride(1) : 0;
  parallel_for(batch * d_inner, [&](int64_t bd) {
    const int64_t b = bd / d_inner, d = bd % d_inner;
    float* h = sp + bd * d_state;
    const float* A = Ap + d * d_state;
    for (int64_t t = 0; t < seq_len; ++t) {
      const int64_t i = (b * seq_len + t) * d_inner + d;
      const float delta = softplus(dp[i] + dbp[d]);
      const float u = up[i], du = delta * u;
      const float* Bv = Bp + b * Bb + t * Bt;
      const float* Cv = Cp + b * Cb + t * Ct;
      float acc = 0.0f;
      for (int64_t n = 0; n < d_state; ++n) {
        h[n] = exp_nonpositive(delta * A[n]) * h[n] + du * Bv[n];  // δ > 0, A < 0
        acc += Cv[n] * h[n];
      }
      float out = acc + Dp[d] * u;
      if (zp) out *= silu(zp[b * zb + t * zt + d]);
      yp[i] = out;
    }
  });
  return y;
}

}  // namespace mamba::ops::cpu
