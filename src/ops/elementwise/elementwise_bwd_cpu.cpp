// Backward of the elementwise ops on CPU (see elementwise.h). The embedding's scatter-add runs
// over columns in parallel so repeated token ids never race. The front (elementwise_bwd.cpp) has
// checked every shape before these run.
#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "ops/elementwise/activations.h"
#include "ops/elementwise/elementwise_params.h"
#include "ops/elementwise/gate_act.h"

namespace mamba::ops::cpu {

Tensor swiglu_bwd(const ElementwiseRows& p, const Tensor& dout, const Tensor& h, bool gate_first) {
  const int64_t n = p.n, rows = p.rows;
  Tensor dh = Tensor::empty(h.shape());  // [..., 2n]
  const float *hp = h.f32(), *dp = dout.f32();
  float* gp = dh.f32();
  parallel_for(rows, [&](int64_t r) {
    const float* a = hp + r * 2 * n;
    const float* d = dp + r * n;
    float* g = gp + r * 2 * n;
    // gate at a[gate_off + i], value at a[value_off + i]
    const int64_t gate_off = gate_first ? 0 : n, value_off = gate_first ? n : 0;
    for (int64_t i = 0; i < n; ++i) {
      const float gate = a[gate_off + i], value = a[value_off + i];
      g[value_off + i] = d[i] * silu(gate);
      g[gate_off + i] = d[i] * value * silu_grad(gate);
    }
  });
  return dh;
}

Tensor gated_act_bwd(const ElementwiseRows& p, const RowReader& rows_h, const RowReader& rows_d,
                     const Tensor& h, GateAct act, bool gate_first) {
  const int64_t n = p.n, rows = p.rows;
  Tensor dh = Tensor::empty(h.shape());  // [..., 2n]
  float* gp = dh.f32();
  // gate at row[gate_off + i], value at row[value_off + i]
  const int64_t gate_off = gate_first ? 0 : n, value_off = gate_first ? n : 0;
  gate_act::dispatch(act, [&](auto a) {
    constexpr GateAct A = decltype(a)::value;
    parallel_row_blocks(rows, n, [&](int64_t r, int64_t c0, int64_t c1) {
      const float *row = rows_h.row(r), *d = rows_d.row(r);
      float* g = gp + r * 2 * n;
      for (int64_t i = c0; i < c1; ++i) {
        const float gate = row[gate_off + i], value = row[value_off + i];
        g[value_off + i] = d[i] * gate_act::value<A>(gate);
        g[gate_off + i] = d[i] * value * gate_act::grad<A>(gate);
      }
    });
  });
  return dh;
}

Tensor activation_bwd(const ElementwiseRows& p, const RowReader& rows_x, const RowReader& rows_d,
                      const Tensor& x, GateAct act) {
  const int64_t n = p.n, rows = p.rows;
  Tensor dx = Tensor::empty(x.shape());
  float* gp = dx.f32();
  gate_act::dispatch(act, [&](auto a) {
    constexpr GateAct A = decltype(a)::value;
    parallel_row_blocks(rows, n, [&](int64_t r, int64_t c0, int64_t c1) {
      const float *src = rows_x.row(r), *d = rows_d.row(r);
      float* g = gp + r * n;
      for (int64_t i = c0; i < c1; ++i) g[i] = d[i] * gate_act::grad<A>(src[i]);
    });
  });
  return dx;
}

void mul_silu_bwd(const Tensor& dout, const Tensor& y, const Tensor& z, Tensor& dy, Tensor& dz) {
  dy = Tensor::empty(y.shape());
  dz = Tensor::empty(y.shape());
  const float *dp = dout.f32(), *yp = y.f32(), *zp = z.f32();
  float *dyp = dy.f32(), *dzp = dz.f32();
  parallel_for(y.numel(), [&](int64_t i) {
    dyp[i] = dp[i] * silu(zp[i]);
    dzp[i] = dp[i] * yp[i] * silu_grad(zp[i]);
  });
}

Tensor softplus_bias_clamp_bwd(const ElementwiseRows& p, const Tensor& dout, const Tensor& raw,
                               const Tensor& bias, float lo, float hi, Tensor& dbias) {
  const int64_t n = p.n, rows = p.rows;
  Tensor draw = Tensor::empty(raw.shape());
  const float *dp = dout.f32(), *rp = raw.f32(), *bp = bias.f32();
  float* gp = draw.f32();
  parallel_for(rows * n, [&](int64_t i) {
    const float v = rp[i] + bp[i % n], sp = softplus(v);
    gp[i] = sp >= lo && sp <= hi ? dp[i] * softplus_grad(v) : 0.0f;
  });
  float* db = dbias.f32();
  for (int64_t c = 0; c < n; ++c) {
    double acc = 0;
    for (int64_t r = 0; r < rows; ++r) acc += gp[r * n + c];
    db[c] += static_cast<float>(acc);
  }
  return draw;
}

void embedding_bwd(const std::vector<int64_t>& rows, const Tensor& dout, Tensor& dtable) {
  const int64_t n = static_cast<int64_t>(rows.size()), d = dtable.size(1);
  const float* dp = dout.f32();
  float* tp = dtable.f32();
  const int64_t n_blocks = std::min<int64_t>(d, std::max(1, num_threads()));
  parallel_for(n_blocks, [&](int64_t blk) {
    const int64_t c0 = d * blk / n_blocks, c1 = d * (blk + 1) / n_blocks;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = c0; c < c1; ++c) tp[rows[i] * d + c] += dp[i * d + c];
  });
}

void neg_exp_bwd(const Tensor& dA, const Tensor& A, Tensor& dA_log) {
  for (int64_t i = 0; i < A.numel(); ++i) dA_log.f32()[i] += dA.f32()[i] * A.f32()[i];
}

}  // namespace mamba::ops::cpu
