// Front of the elementwise ops' backward (see elementwise.h): checks each call once, packs its rows
// (elementwise_params.h) and runs the CPU kernel (elementwise_bwd_cpu.cpp) or the CUDA one through
// the kernel table.
#include <vector>

#include "core/error.h"
#include "ops/device.h"
#include "ops/elementwise/cpu_rows.h"
#include "ops/elementwise/elementwise.h"
#include "ops/elementwise/elementwise_params.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor swiglu_bwd(Exec& exec, const Tensor& dout_in, const Tensor& h_in, bool gate_first) {
  OpScope op_scope(exec, "swiglu_bwd", h_in.device());
  if (h_in.device() == Device::cuda) return cuda_kernels().elementwise.swiglu_bwd(dout_in, h_in, gate_first);
  const Tensor h = h_in.contiguous(), dout = dout_in.contiguous();
  const int64_t n = h.size(-1) / 2, rows = h.numel() / (2 * n);
  MAMBA_CHECK(dout.numel() == rows * n && dout.size(-1) == n,
              "swiglu_bwd: dout " << shape_str(dout.shape()) << " must be [..., n] for h "
                                  << shape_str(h.shape()) << " [..., 2n]");
  return cpu::swiglu_bwd({rows, n}, dout, h, gate_first);
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
  return cpu::gated_act_bwd({rows, n}, rows_h, rows_d, h, act, gate_first);
}

Tensor activation_bwd(Exec& exec, const Tensor& dout_in, const Tensor& x, GateAct act) {
  OpScope op_scope(exec, "activation_bwd", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().elementwise.activation_bwd(dout_in, x, act);
  const RowReader rows_x(x, "activation_bwd: x"), rows_d(dout_in, "activation_bwd: dout");
  const int64_t n = rows_x.n(), rows = rows_x.rows();
  MAMBA_CHECK(rows_d.n() == n && rows_d.rows() == rows,
              "activation_bwd: dout " << shape_str(dout_in.shape()) << " x " << shape_str(x.shape()));
  return cpu::activation_bwd({rows, n}, rows_x, rows_d, x, act);
}

void mul_silu_bwd(Exec& exec, const Tensor& dout_in, const Tensor& y_in, const Tensor& z_in, Tensor& dy,
                  Tensor& dz) {
  OpScope op_scope(exec, "mul_silu_bwd", y_in.device());
  if (y_in.device() == Device::cuda)
    return cuda_kernels().elementwise.mul_silu_bwd(dout_in, y_in, z_in, dy, dz);
  const Tensor dout = dout_in.contiguous(), y = y_in.contiguous(), z = z_in.contiguous();
  MAMBA_CHECK(dout.shape() == y.shape() && z.shape() == y.shape(),
              "mul_silu_bwd: dout " << shape_str(dout.shape()) << ", y " << shape_str(y.shape()) << " and z "
                                    << shape_str(z.shape()) << " must be of one shape");
  cpu::mul_silu_bwd(dout, y, z, dy, dz);
}

Tensor softplus_bias_clamp_bwd(Exec& exec, const Tensor& dout_in, const Tensor& raw_in, const Tensor& bias,
                               float lo, float hi, Tensor& dbias) {
  OpScope op_scope(exec, "softplus_bias_clamp_bwd", raw_in.device());
  if (raw_in.device() == Device::cuda)
    return cuda_kernels().elementwise.softplus_bias_clamp_bwd(dout_in, raw_in, bias, lo, hi, dbias);
  const Tensor dout = dout_in.contiguous(), raw = raw_in.contiguous();
  const int64_t n = raw.size(-1), rows = raw.numel() / n;
  MAMBA_CHECK(dout.shape() == raw.shape() && bias.numel() == n && dbias.numel() == n,
              "softplus_bias_clamp_bwd: dout "
                  << shape_str(dout.shape()) << " must be raw's " << shape_str(raw.shape()) << ", bias "
                  << shape_str(bias.shape()) << " and dbias " << shape_str(dbias.shape()) << " [n]");
  return cpu::softplus_bias_clamp_bwd({rows, n}, dout, raw, bias, lo, hi, dbias);
}

void embedding_bwd(Exec& exec, const Tensor& ids_in, const Tensor& dout_in, Tensor& dtable) {
  OpScope op_scope(exec, "embedding_bwd", dtable.device());
  if (dtable.device() == Device::cuda)
    return cuda_kernels().elementwise.embedding_bwd(ids_in, dout_in, dtable);
  const Tensor ids = ids_in.contiguous(), dout = dout_in.contiguous();
  MAMBA_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32,
              "embedding_bwd: ids must be i64 or i32, got " << dtype_name(ids.dtype()));
  const int64_t n = ids.numel(), d = dtable.size(1), vocab = dtable.size(0);
  MAMBA_CHECK(dout.numel() == n * d && dtable.is_contiguous(),
              "embedding_bwd: dout " << shape_str(dout.shape()) << " must be [ids..., d] for ids "
                                     << shape_str(ids.shape()) << " and a contiguous dtable "
                                     << shape_str(dtable.shape()) << " [vocab, d]");
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    rows[i] = ids.dtype() == DType::i64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
    MAMBA_CHECK(rows[i] >= 0 && rows[i] < vocab, "token id " << rows[i]);
  }
  cpu::embedding_bwd(rows, dout, dtable);
}

void neg_exp_bwd(Exec& exec, const Tensor& dA, const Tensor& A, Tensor& dA_log) {
  OpScope op_scope(exec, "neg_exp_bwd", dA_log.device());
  if (dA_log.device() == Device::cuda) return cuda_kernels().elementwise.neg_exp_bwd(dA, A, dA_log);
  MAMBA_CHECK(
      dA.shape() == A.shape() && dA_log.numel() == A.numel() && dA.is_contiguous() && A.is_contiguous(),
      "neg_exp_bwd: dA " << shape_str(dA.shape()) << ", A " << shape_str(A.shape())
                         << " (contiguous) and dA_log " << shape_str(dA_log.shape())
                         << " must be of one size");
  cpu::neg_exp_bwd(dA, A, dA_log);
}

}  // namespace mamba::ops
