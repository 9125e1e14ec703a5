// Backward of the selective scan on CPU: per (batch, channel) the forward is re-run to store
// h_t, then a reverse-time pass carries dh (dh_{t-1} = exp(δ_t·A)·dh_t). Work item = (batch,
// block of channels); B and C are shared by the channels, so their gradients go to per-item
// buffers summed at the end, as do the per-channel parameter gradients over the batch.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/selective_scan/selective_scan.h"

namespace mamba::ops {

namespace {

// Per-work-item partial sums, reduced after the parallel loop.
struct ScanPartials {
  std::vector<float> dB, dC;  // [n_items, seq_len, d_state]
  std::vector<float> dA;      // [batch, d_inner, d_state]
  std::vector<float> dD, dbias;  // [batch, d_inner]
};

}  // namespace

SelectiveScanGrads selective_scan_bwd(const SelectiveScanArgs& a, const Tensor& dy_in) {
  const int64_t batch = a.u.size(0), L = a.u.size(1), DI = a.u.size(2), N = a.A.size(1);
  MAMBA_CHECK(a.u.is_contiguous() && a.delta.is_contiguous() && a.delta.shape() == a.u.shape());
  MAMBA_CHECK(a.B.stride(2) == 1 && a.C.stride(2) == 1 && a.B.size(2) == N && a.C.size(2) == N);
  MAMBA_CHECK(!a.z.defined() || a.z.stride(2) == 1);
  const Tensor dy = dy_in.contiguous();
  MAMBA_CHECK(dy.shape() == a.u.shape());
  SelectiveScanGrads g;
  g.du = Tensor::empty({batch, L, DI});
  g.ddelta = Tensor::empty({batch, L, DI});
  if (a.z.defined()) g.dz = Tensor::empty({batch, L, DI});
  const int64_t n_blocks = std::max<int64_t>(1, std::min<int64_t>(DI, (num_threads() + batch - 1) / batch));
  const int64_t n_items = batch * n_blocks;
  ScanPartials part;
  part.dB.assign(static_cast<size_t>(n_items * L * N), 0.0f);
  part.dC.assign(static_cast<size_t>(n_items * L * N), 0.0f);
  part.dA.assign(static_cast<size_t>(batch * DI * N), 0.0f);
  part.dD.assign(static_cast<size_t>(batch * DI), 0.0f);
  part.dbias.assign(static_cast<size_t>(batch * DI), 0.0f);
  const float *up = a.u.f32(), *dp = a.delta.f32(), *dbp = a.delta_bias.f32(), *Ap = a.A.f32();
  const float *Bp = a.B.f32(), *Cp = a.C.f32(), *Dp = a.D.f32(), *zp = a.z.defined() ? a.z.f32() : nullptr;
  const float* dyp = dy.f32();
  const int64_t Bb = a.B.stride(0), Bt = a.B.stride(1), Cb = a.C.stride(0), Ct = a.C.stride(1);
  const int64_t zb = zp ? a.z.stride(0) : 0, zt = zp ? a.z.stride(1) : 0;
  parallel_for(n_items, [&](int64_t item) {
    const int64_t b = item / n_blocks, blk = item % n_blocks;
    float* dB_loc = part.dB.data() + item * L * N;
    float* dC_loc = part.dC.data() + item * L * N;
    std::vector<float> hs(static_cast<size_t>(L * N)), delta(static_cast<size_t>(L)), dh(static_cast<size_t>(N));
    std::vector<double> dA(static_cast<size_t>(N));
    for (int64_t d = DI * blk / n_blocks; d < DI * (blk + 1) / n_blocks; ++d) {
      const float* A = Ap + d * N;
      // Forward again, keeping every h_t ([seq_len, d_state]).
      for (int64_t t = 0; t < L; ++t) {
        const int64_t i = (b * L + t) * DI + d;
        delta[t] = softplus(dp[i] + dbp[d]);
        const float du = delta[t] * up[i];
        const float* Bv = Bp + b * Bb + t * Bt;
        float* h = hs.data() + t * N;
        const float* h_prev = t > 0 ? h - N : nullptr;
        for (int64_t n = 0; n < N; ++n) h[n] = (h_prev ? std::exp(delta[t] * A[n]) * h_prev[n] : 0.0f) + du * Bv[n];
      }
      std::fill(dh.begin(), dh.end(), 0.0f);
      std::fill(dA.begin(), dA.end(), 0.0);
      double dD = 0, dbias = 0;
      for (int64_t t = L - 1; t >= 0; --t) {
        const int64_t i = (b * L + t) * DI + d;
        const float u = up[i], dl = delta[t];
        const float* Bv = Bp + b * Bb + t * Bt;
        const float* Cv = Cp + b * Cb + t * Ct;
        const float* h = hs.data() + t * N;
        const float* h_prev = t > 0 ? h - N : nullptr;
        float dy0 = dyp[i];
        if (zp) {  // y = y0·silu(z)
          float y0 = Dp[d] * u;
          for (int64_t n = 0; n < N; ++n) y0 += Cv[n] * h[n];
          const float zv = zp[b * zb + t * zt + d];
          g.dz.f32()[i] = dy0 * y0 * silu_grad(zv);
          dy0 *= silu(zv);
        }
        dD += static_cast<double>(dy0) * u;
        float du = Dp[d] * dy0, ddelta = 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          dh[n] += dy0 * Cv[n];
          dC_loc[t * N + n] += dy0 * h[n];
          const float decay = std::exp(dl * A[n]), hp = h_prev ? h_prev[n] : 0.0f;
          ddelta += dh[n] * (A[n] * decay * hp + Bv[n] * u);
          dA[n] += static_cast<double>(dh[n]) * dl * decay * hp;
          dB_loc[t * N + n] += dh[n] * dl * u;
          du += dh[n] * dl * Bv[n];
          dh[n] *= decay;
        }
        g.du.f32()[i] = du;
        const float draw = ddelta * softplus_grad(dp[i] + dbp[d]);
        g.ddelta.f32()[i] = draw;
        dbias += draw;
      }
      for (int64_t n = 0; n < N; ++n) part.dA[(b * DI + d) * N + n] = static_cast<float>(dA[n]);
      part.dD[b * DI + d] = static_cast<float>(dD);
      part.dbias[b * DI + d] = static_cast<float>(dbias);
    }
  });
  // Reductions: dB, dC over the channel blocks of each batch; parameters over the batch.
  g.dB = Tensor::zeros({batch, L, N});
  g.dC = Tensor::zeros({batch, L, N});
  parallel_for(batch * L * N, [&](int64_t i) {
    const int64_t b = i / (L * N), r = i % (L * N);
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      g.dB.f32()[i] += part.dB[(b * n_blocks + blk) * L * N + r];
      g.dC.f32()[i] += part.dC[(b * n_blocks + blk) * L * N + r];
    }
  });
  g.dA = Tensor::zeros({DI, N});
  g.dD = Tensor::zeros({DI});
  g.ddelta_bias = Tensor::zeros({DI});
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < DI * N; ++i) g.dA.f32()[i] += part.dA[b * DI * N + i];
    for (int64_t i = 0; i < DI; ++i) {
      g.dD.f32()[i] += part.dD[b * DI + i];
      g.ddelta_bias.f32()[i] += part.dbias[b * DI + i];
    }
  }
  return g;
}

}  // namespace mamba::ops
