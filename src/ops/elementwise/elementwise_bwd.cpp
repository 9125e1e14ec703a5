// Backward of the elementwise ops on CPU (see elementwise.h). The embedding's scatter-add runs
// over columns in parallel so repeated token ids never race.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/device.h"
#include "ops/elementwise/activations.h"
#include "ops/elementwise/cpu_rows.h"
#include "ops/elementwise/elementwise.h"
#include "ops/elementwise/gate_act.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor swiglu_bwd(Exec& exec, const Tensor& dout_in, const Tensor& h_in, bool gate_first) {
  OpScope op_scope(exec, "swiglu_bwd", h_in.device());
  if (h_in.device() == Device::cuda) return cuda_kernels().elementwise.swiglu_bwd(dout_in, h_in, gate_first);
  const Tensor h = h_in.contiguous(), dout = dout_in.contiguous();
  const int64_t n = h.size(-1) / 2, rows = h.numel() / (2 * n);
  MAMBA_CHECK(dout.numel() == rows * n && dout.size(-1) == n);
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

Tensor gated_act_bwd(Exec& exec, const Tensor& dout_in, const Tensor& h, GateAct act, bool gate_first) {
  if (act == GateAct::silu) return swiglu_bwd(exec, dout_in, h, gate_first);
  OpScope op_scope(exec, "gated_act_bwd", h.device());
  if (h.device() == Device::cuda)
    return cuda_kernels().elementwise.gated_act_bwd(dout_in, h, act, gate_first);
  const RowReader rows_h(h, "gated_act_bwd: h"), rows_d(dout_in, "gated_act_bwd: dout");
  MAMBA_CHECK(rows_h.n() % 2 == 0, "gated_act_bwd: odd last dim in " << shape_str(h.shape()));
  const int64_t n = rows_h.n() / 2, rows = rows_h.rows();
  MAMBA_CHECK(rows_d.n() == n && rows_d.rows() == rows,
              "gated_act_bwd: dout " << shape_str(dout_in.shape()) << " h " << shape_str(h.shape()));
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

Tensor activation_bwd(Exec& exec, const Tensor& dout_in, const Tensor& x, GateAct act) {
  OpScope op_scope(exec, "activation_bwd", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().elementwise.activation_bwd(dout_in, x, act);
  const RowReader rows_x(x, "activation_bwd: x"), rows_d(dout_in, "activation_bwd: dout");
  const int64_t n = rows_x.n(), rows = rows_x.rows();
  MAMBA_CHECK(rows_d.n() == n && rows_d.rows() == rows,
              "activation_bwd: dout " << shape_str(dout_in.shape()) << " x " << shape_str(x.shape()));
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

void mul_silu_bwd(Exec& exec, const Tensor& dout_in, const Tensor& y_in, const Tensor& z_in, Tensor& dy,
                  Tensor& dz) {
  OpScope op_scope(exec, "mul_silu_bwd", y_in.device());
  if (y_in.device() == Device::cuda)
    return cuda_kernels().elementwise.mul_silu_bwd(dout_in, y_in, z_in, dy, dz);
  const Tensor dout = dout_in.contiguous(), y = y_in.contiguous(), z = z_in.contiguous();
  MAMBA_CHECK(dout.shape() == y.shape() && z.shape() == y.shape());
  dy = Tensor::empty(y.shape());
  dz = Tensor::empty(y.shape());
  const float *dp = dout.f32(), *yp = y.f32(), *zp = z.f32();
  float *dyp = dy.f32(), *dzp = dz.f32();
  parallel_for(y.numel(), [&](int64_t i) {
    dyp[i] = dp[i] * silu(zp[i]);
    dzp[i] = dp[i] * yp[i] * silu_grad(zp[i]);
  });
}

Tensor softplus_bias_clamp_bwd(Exec& exec, const Tensor& dout_in, const Tensor& raw_in, const Tensor& bias,
                               float lo, float hi, Tensor& dbias) {
  OpScope op_scope(exec, "softplus_bias_clamp_bwd", raw_in.device());
  if (raw_in.device() == Device::cuda)
    return cuda_kernels().elementwise.softplus_bias_clamp_bwd(dout_in, raw_in, bias, lo, hi, dbias);
  const Tensor dout = dout_in.contiguous(), raw = raw_in.contiguous();
  const int64_t n = raw.size(-1), rows = raw.numel() / n;
  MAMBA_CHECK(dout.shape() == raw.shape() && bias.numel() == n && dbias.numel() == n);
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

void embedding_bwd(Exec& exec, const Tensor& ids_in, const Tensor& dout_in, Tensor& dtable) {
  OpScope op_scope(exec, "embedding_bwd", dtable.device());
  if (dtable.device() == Device::cuda)
    return cuda_kernels().elementwise.embedding_bwd(ids_in, dout_in, dtable);
  const Tensor ids = ids_in.contiguous(), dout = dout_in.contiguous();
  MAMBA_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32);
  const int64_t n = ids.numel(), d = dtable.size(1), vocab = dtable.size(0);
  MAMBA_CHECK(dout.numel() == n * d && dtable.is_contiguous());
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    rows[i] = ids.dtype() == DType::i64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
    MAMBA_CHECK(rows[i] >= 0 && rows[i] < vocab, "token id " << rows[i]);
  }
  const float* dp = dout.f32();
  float* tp = dtable.f32();
  const int64_t n_blocks = std::min<int64_t>(d, std::max(1, num_threads()));
  parallel_for(n_blocks, [&](int64_t blk) {
    const int64_t c0 = d * blk / n_blocks, c1 = d * (blk + 1) / n_blocks;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = c0; c < c1; ++c) tp[rows[i] * d + c] += dp[i * d + c];
  });
}

void neg_exp_bwd(Exec& exec, const Tensor& dA, const Tensor& A, Tensor& dA_log) {
  OpScope op_scope(exec, "neg_exp_bwd", dA_log.device());
  if (dA_log.device() == Device::cuda) return cuda_kernels().elementwise.neg_exp_bwd(dA, A, dA_log);
  MAMBA_CHECK(dA.shape() == A.shape() && dA_log.numel() == A.numel() && dA.is_contiguous() &&
              A.is_contiguous());
  for (int64_t i = 0; i < A.numel(); ++i) dA_log.f32()[i] += dA.f32()[i] * A.f32()[i];
}

}  // namespace mamba::ops
