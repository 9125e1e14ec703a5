// Front of the elementwise ops (see elementwise.h): checks each call once, packs its rows
// (elementwise_params.h) and runs the CPU kernel (elementwise_cpu.cpp) or the CUDA one through the
// kernel table.
#include "ops/elementwise/elementwise.h"

#include "core/error.h"
#include "ops/device.h"
#include "ops/elementwise/cpu_rows.h"
#include "ops/elementwise/elementwise_params.h"
#include "ops/kernels.h"

namespace mamba::ops {

void add_(Exec& exec, Tensor& a, const Tensor& b) {
  OpScope op_scope(exec, "add_", a.device());
  if (a.device() == Device::cuda) return cuda_kernels().elementwise.add_(a, b);
  MAMBA_CHECK(a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous(),
              "add_: a " << shape_str(a.shape()) << " and b " << shape_str(b.shape())
                         << " must be contiguous, of one shape");
  cpu::add_(a, b);
}

void scale_(Exec& exec, Tensor& x, float s) {
  OpScope op_scope(exec, "scale_", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().optim.scale_(x, s);
  MAMBA_CHECK(x.is_contiguous() && x.dtype() == DType::f32,
              "scale_: expected a contiguous f32 tensor, got " << dtype_name(x.dtype()));
  cpu::scale_(x, s);
}

Tensor gated_act(Exec& exec, const Tensor& h, GateAct act, bool gate_first) {
  if (act == GateAct::silu) return swiglu(exec, h, gate_first);
  OpScope op_scope(exec, "gated_act", h.device());
  if (h.device() == Device::cuda) return cuda_kernels().elementwise.gated_act(h, act, gate_first);
  const RowReader rows_h(h, "gated_act: h");
  MAMBA_CHECK(rows_h.n() % 2 == 0, "gated_act: odd last dim in " << shape_str(h.shape()));
  return cpu::gated_act({rows_h.rows(), rows_h.n() / 2}, rows_h, h, act, gate_first);
}

Tensor activation(Exec& exec, const Tensor& x, GateAct act) {
  OpScope op_scope(exec, "activation", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().elementwise.activation(x, act);
  const RowReader rows_x(x, "activation: x");
  return cpu::activation({rows_x.rows(), rows_x.n()}, rows_x, x, act);
}

Tensor swiglu(Exec& exec, const Tensor& h_in, bool gate_first) {
  OpScope op_scope(exec, "swiglu", h_in.device());
  if (h_in.device() == Device::cuda) return cuda_kernels().elementwise.swiglu(h_in, gate_first);
  MAMBA_CHECK(h_in.stride(-1) == 1 && h_in.size(-1) % 2 == 0,
              "swiglu: h " << shape_str(h_in.shape()) << " needs an even, contiguous last dim [..., 2n]");
  const Tensor h = h_in.contiguous();
  const int64_t n = h.size(-1) / 2;
  return cpu::swiglu({h.numel() / (2 * n), n}, h, gate_first);
}

void mul_silu_(Exec& exec, Tensor& y, const Tensor& z) {
  OpScope op_scope(exec, "mul_silu_", y.device());
  if (y.device() == Device::cuda) return cuda_kernels().elementwise.mul_silu_(y, z);
  MAMBA_CHECK(y.is_contiguous() && y.dim() == 3 && z.dim() == 3 && z.stride(2) == 1 && y.shape() == z.shape(),
              "mul_silu_: y " << shape_str(y.shape()) << " (contiguous) and z " << shape_str(z.shape())
                              << " (last dim contiguous) must be [batch, seq_len, n]");
  cpu::mul_silu_({y.size(0) * y.size(1), y.size(2)}, y, z);
}

Tensor softplus_bias_clamp(Exec& exec, const Tensor& raw, const Tensor& bias, float lo, float hi) {
  OpScope op_scope(exec, "softplus_bias_clamp", raw.device());
  if (raw.device() == Device::cuda) return cuda_kernels().elementwise.softplus_bias_clamp(raw, bias, lo, hi);
  MAMBA_CHECK(raw.dim() == 3 && raw.stride(2) == 1 && bias.numel() == raw.size(2),
              "softplus_bias_clamp: raw " << shape_str(raw.shape())
                                          << " must be [batch, seq_len, n] (last dim contiguous), bias "
                                          << shape_str(bias.shape()) << " [n]");
  return cpu::softplus_bias_clamp({raw.size(0) * raw.size(1), raw.size(2)}, raw, bias, lo, hi);
}

Tensor concat_last(Exec& exec, const Tensor& a_in, const Tensor& b_in) {
  OpScope op_scope(exec, "concat_last", a_in.device());
  if (a_in.device() == Device::cuda) return cuda_kernels().elementwise.concat_last(a_in, b_in);
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t rows = a.numel() / a.size(-1);
  MAMBA_CHECK(b.numel() / b.size(-1) == rows, "concat_last: a " << shape_str(a.shape()) << " and b "
                                                                << shape_str(b.shape()) << " differ in rows");
  return cpu::concat_last(rows, a, b);
}

Tensor embedding(Exec& exec, const Tensor& ids_in, const Tensor& table) {
  OpScope op_scope(exec, "embedding", table.device());
  if (table.device() == Device::cuda) return cuda_kernels().elementwise.embedding(ids_in, table);
  const Tensor ids = ids_in.contiguous();
  MAMBA_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32,
              "embedding: ids must be i64 or i32, got " << dtype_name(ids.dtype()));
  MAMBA_CHECK(table.dtype() == DType::f32 || table.is_contiguous(),
              "a quantized embedding table is used as stored");
  const int64_t vocab = table.size(0);
  for (int64_t i = 0; i < ids.numel(); ++i) {
    const int64_t id = ids.dtype() == DType::i64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
    if (id < 0 || id >= vocab)
      throw_error(ErrorCode::out_of_range, "token id ", id, " at position ", i,
                  " is outside the vocabulary [0, ", vocab, ")");
  }
  return cpu::embedding(ids, table);
}

Tensor neg_exp(Exec& exec, const Tensor& x_in) {
  MAMBA_CHECK(x_in.dtype() == DType::f32, "neg_exp takes f32, got " << dtype_name(x_in.dtype()));
  OpScope op_scope(exec, "neg_exp", x_in.device());
  if (x_in.device() == Device::cuda) return cuda_kernels().elementwise.neg_exp(x_in);
  return cpu::neg_exp(x_in.contiguous());
}

}  // namespace mamba::ops
