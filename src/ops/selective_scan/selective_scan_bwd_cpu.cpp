// Backward of the selective scan on CPU: per (batch, channel) the forward is re-run to store
// h_t, then a reverse-time pass carries dh (dh_{t-1} = exp(δ_t·A)·dh_t). Work item = (batch,
// block of channels); B and C are shared by the channels, so their gradients go to per-item
// buffers summed at the end, as do the per-channel parameter gradients over the batch.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/selective_scan/selective_scan_params.h"

namespace mamba::ops::cpu {

namespace {

// Per-work-item partial sums, reduced after the parallel loop.
struct ScanPartials {
  std::vector<float> dB, dC;     // [n_items, seq_len, d_state]
  std::vector<float> dA;         // [batch, d_inner, d_state]
  std::vector<float> dD, dbias;  // [batch, d_inner]
};

// Raw pointers and strides of the inputs, as the forward reads them.
struct ScanView {
  int64_t batch, L, DI, N;
  const float *u, *delta, *delta_bias, *A, *B, *C, *D, *z, *dy;
  int64_t B_b, B_t, C_b, C_t, z_b, z_t;
};

// Per-thread scratch of one channel: h_t for every t, δ_t, the running dh and the dA sums.
struct ChannelScratch {
  std::vector<float> hs, delta, dh;
  std::vector<double> dA;
  explicit ChannelScratch(const ScanView& v) : hs(v.L * v.N), delta(v.L), dh(v.N), dA(v.N) {}
};

// Channel d of sequence b: forward again keeping h_t, then the reverse-time pass. Writes du,
// dδ_raw, dz; adds into this item's dB/dC rows and the channel's slots of the partials.
void channel_bwd(const ScanView& v, int64_t b, int64_t d, ChannelScratch& w, float* dB_loc, float* dC_loc,
                 SelectiveScanGrads& g, ScanPartials& part) {
  const int64_t L = v.L, DI = v.DI, N = v.N;
  const float* A = v.A + d * N;
  for (int64_t t = 0; t < L; ++t) {
    const int64_t i = (b * L + t) * DI + d;
    w.delta[t] = softplus(v.delta[i] + v.delta_bias[d]);
    const float du = w.delta[t] * v.u[i];
    const float* Bv = v.B + b * v.B_b + t * v.B_t;
    float* h = w.hs.data() + t * N;
    for (int64_t n = 0; n < N; ++n)
      h[n] = (t > 0 ? std::exp(w.delta[t] * A[n]) * h[n - N] : 0.0f) + du * Bv[n];
  }
  std::fill(w.dh.begin(), w.dh.end(), 0.0f);
  std::vector<double>& dA = w.dA;
  std::fill(dA.begin(), dA.end(), 0.0);
  double dD = 0, dbias = 0;
  for (int64_t t = L - 1; t >= 0; --t) {
    const int64_t i = (b * L + t) * DI + d;
    const float u = v.u[i], dl = w.delta[t];
    const float* Bv = v.B + b * v.B_b + t * v.B_t;
    const float* Cv = v.C + b * v.C_b + t * v.C_t;
    const float* h = w.hs.data() + t * N;
    float dy0 = v.dy[i];
    if (v.z) {  // y = y0·silu(z)
      float y0 = v.D[d] * u;
      for (int64_t n = 0; n < N; ++n) y0 += Cv[n] * h[n];
      const float zv = v.z[b * v.z_b + t * v.z_t + d];
      g.dz.f32()[i] = dy0 * y0 * silu_grad(zv);
      dy0 *= silu(zv);
    }
    dD += static_cast<double>(dy0) * u;
    float du = v.D[d] * dy0, ddelta = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      float& dh = w.dh[n];
      dh += dy0 * Cv[n];
      dC_loc[t * N + n] += dy0 * h[n];
      const float decay = std::exp(dl * A[n]), h_prev = t > 0 ? h[n - N] : 0.0f;
      ddelta += dh * (A[n] * decay * h_prev + Bv[n] * u);
      dA[n] += static_cast<double>(dh) * dl * decay * h_prev;
      dB_loc[t * N + n] += dh * dl * u;
      du += dh * dl * Bv[n];
      dh *= decay;  // dh_{t-1} = exp(δ_t·A)·dh_t
    }
    g.du.f32()[i] = du;
    const float draw = ddelta * softplus_grad(v.delta[i] + v.delta_bias[d]);
    g.ddelta.f32()[i] = draw;
    dbias += draw;
  }
  for (int64_t n = 0; n < N; ++n) part.dA[(b * DI + d) * N + n] = static_cast<float>(dA[n]);
  part.dD[b * DI + d] = static_cast<float>(dD);
  part.dbias[b * DI + d] = static_cast<float>(dbias);
}

}  // namespace

SelectiveScanGrads selective_scan_bwd(const SelectiveScanParams& p, const SelectiveScanArgs& a,
                                      const Tensor& dy) {
  const int64_t batch = p.batch, L = p.seq_len, DI = p.d_inner, N = p.d_state;
  const bool gated = a.z.defined();
  const ScanView v{batch,
                   L,
                   DI,
                   N,
                   a.u.f32(),
                   a.delta.f32(),
                   a.delta_bias.f32(),
                   a.A.f32(),
                   a.B.f32(),
                   a.C.f32(),
                   a.D.f32(),
                   gated ? a.z.f32() : nullptr,
                   dy.f32(),
                   a.B.stride(0),
                   a.B.stride(1),
                   a.C.stride(0),
                   a.C.stride(1),
                   gated ? a.z.stride(0) : 0,
                   gated ? a.z.stride(1) : 0};
  SelectiveScanGrads g;
  g.du = Tensor::empty({batch, L, DI});
  g.ddelta = Tensor::empty({batch, L, DI});
  if (gated) g.dz = Tensor::empty({batch, L, DI});
  // Work item = (batch, block of channels); enough blocks to use every thread.
  const int64_t n_blocks = std::max<int64_t>(1, std::min<int64_t>(DI, (num_threads() + batch - 1) / batch));
  const int64_t n_items = batch * n_blocks;
  ScanPartials part;
  part.dB.assign(static_cast<size_t>(n_items * L * N), 0.0f);
  part.dC.assign(static_cast<size_t>(n_items * L * N), 0.0f);
  part.dA.assign(static_cast<size_t>(batch * DI * N), 0.0f);
  part.dD.assign(static_cast<size_t>(batch * DI), 0.0f);
  part.dbias.assign(static_cast<size_t>(batch * DI), 0.0f);
  parallel_for(n_items, [&](int64_t item) {
    const int64_t b = item / n_blocks, blk = item % n_blocks;
    ChannelScratch w(v);
    for (int64_t d = DI * blk / n_blocks; d < DI * (blk + 1) / n_blocks; ++d)
      channel_bwd(v, b, d, w, part.dB.data() + item * L * N, part.dC.data() + item * L * N, g, part);
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

}  // namespace mamba::ops::cpu
