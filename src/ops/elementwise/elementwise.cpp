// CPU elementwise ops (see elementwise.h).
#include "ops/elementwise/elementwise.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "core/quant_blocks.h"
#include "ops/device.h"
#include "ops/elementwise/activations.h"
#include "ops/elementwise/cpu_rows.h"
#include "ops/elementwise/gate_act.h"
#include "ops/kernels.h"

namespace mamba::ops {

namespace {
// Pointer to row r of a [batch, seq_len, n] tensor whose rows may be strided.
inline const float* row3(const Tensor& t, int64_t r) {
  const int64_t seq_len = t.size(1);
  return t.f32() + (r / seq_len) * t.stride(0) + (r % seq_len) * t.stride(1);
}
}  // namespace

void add_(Exec& exec, Tensor& a, const Tensor& b) {
  OpScope op_scope(exec, "add_", a.device());
  if (a.device() == Device::cuda) return cuda_kernels().elementwise.add_(a, b);
  MAMBA_CHECK(a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous());
  float* ap = a.f32();
  const float* bp = b.f32();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) ap[i] += bp[i];
}

void scale_(Exec& exec, Tensor& x, float s) {
  OpScope op_scope(exec, "scale_", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().optim.scale_(x, s);
  MAMBA_CHECK(x.is_contiguous() && x.dtype() == DType::f32,
              "scale_: expected a contiguous f32 tensor, got " << dtype_name(x.dtype()));
  float* p = x.f32();
  const int64_t n = x.numel();
  parallel_row_blocks(1, n, [&](int64_t, int64_t c0, int64_t c1) {
    for (int64_t i = c0; i < c1; ++i) p[i] *= s;
  });
}

Tensor gated_act(Exec& exec, const Tensor& h, GateAct act, bool gate_first) {
  if (act == GateAct::silu) return swiglu(exec, h, gate_first);
  OpScope op_scope(exec, "gated_act", h.device());
  if (h.device() == Device::cuda) return cuda_kernels().elementwise.gated_act(h, act, gate_first);
  const RowReader rows_h(h, "gated_act: h");
  MAMBA_CHECK(rows_h.n() % 2 == 0, "gated_act: odd last dim in " << shape_str(h.shape()));
  const int64_t n = rows_h.n() / 2;
  Shape shape = h.shape();
  shape.back() = n;
  Tensor out = Tensor::empty(shape);
  float* op = out.f32();
  gate_act::dispatch(act, [&](auto a) {
    constexpr GateAct A = decltype(a)::value;
    parallel_row_blocks(rows_h.rows(), n, [&](int64_t r, int64_t c0, int64_t c1) {
      const float* row = rows_h.row(r);
      const float* gate = row + (gate_first ? 0 : n);
      const float* value = row + (gate_first ? n : 0);
      float* o = op + r * n;
      for (int64_t i = c0; i < c1; ++i) o[i] = gate_act::value<A>(gate[i]) * value[i];
    });
  });
  return out;
}

Tensor activation(Exec& exec, const Tensor& x, GateAct act) {
  OpScope op_scope(exec, "activation", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().elementwise.activation(x, act);
  const RowReader rows_x(x, "activation: x");
  const int64_t n = rows_x.n();
  Tensor out = Tensor::empty(x.shape());
  float* op = out.f32();
  gate_act::dispatch(act, [&](auto a) {
    constexpr GateAct A = decltype(a)::value;
    parallel_row_blocks(rows_x.rows(), n, [&](int64_t r, int64_t c0, int64_t c1) {
      const float* src = rows_x.row(r);
      float* o = op + r * n;
      for (int64_t i = c0; i < c1; ++i) o[i] = gate_act::value<A>(src[i]);
    });
  });
  return out;
}

Tensor swiglu(Exec& exec, const Tensor& h_in, bool gate_first) {
  OpScope op_scope(exec, "swiglu", h_in.device());
  if (h_in.device() == Device::cuda) return cuda_kernels().elementwise.swiglu(h_in, gate_first);
  MAMBA_CHECK(h_in.stride(-1) == 1 && h_in.size(-1) % 2 == 0);
  const Tensor h = h_in.contiguous();
  const int64_t n = h.size(-1) / 2, rows = h.numel() / (2 * n);
  Shape shape = h.shape();
  shape.back() = n;
  Tensor out = Tensor::empty(shape);
  const float* hp = h.f32();
  float* op = out.f32();
  parallel_for(rows, [&](int64_t r) {
    const float* a = hp + r * 2 * n;
    for (int64_t i = 0; i < n; ++i)
      op[r * n + i] = gate_first ? silu(a[i]) * a[n + i] : a[i] * silu(a[n + i]);
  });
  return out;
}

void mul_silu_(Exec& exec, Tensor& y, const Tensor& z) {
  OpScope op_scope(exec, "mul_silu_", y.device());
  if (y.device() == Device::cuda) return cuda_kernels().elementwise.mul_silu_(y, z);
  MAMBA_CHECK(y.is_contiguous() && y.dim() == 3 && z.dim() == 3 && z.stride(2) == 1 &&
              y.shape() == z.shape());
  const int64_t n = y.size(2), rows = y.size(0) * y.size(1);
  float* yp = y.f32();
  parallel_for(rows, [&](int64_t r) {
    const float* zr = row3(z, r);
    for (int64_t i = 0; i < n; ++i) yp[r * n + i] *= silu(zr[i]);
  });
}

Tensor softplus_bias_clamp(Exec& exec, const Tensor& raw, const Tensor& bias, float lo, float hi) {
  OpScope op_scope(exec, "softplus_bias_clamp", raw.device());
  if (raw.device() == Device::cuda) return cuda_kernels().elementwise.softplus_bias_clamp(raw, bias, lo, hi);
  MAMBA_CHECK(raw.dim() == 3 && raw.stride(2) == 1 && bias.numel() == raw.size(2));
  const int64_t n = raw.size(2), rows = raw.size(0) * raw.size(1);
  Tensor out = Tensor::empty({raw.size(0), raw.size(1), n});
  const float* bp = bias.f32();
  float* op = out.f32();
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = row3(raw, r);
    for (int64_t i = 0; i < n; ++i) op[r * n + i] = std::min(std::max(softplus(src[i] + bp[i]), lo), hi);
  }
  return out;
}

Tensor concat_last(Exec& exec, const Tensor& a_in, const Tensor& b_in) {
  OpScope op_scope(exec, "concat_last", a_in.device());
  if (a_in.device() == Device::cuda) return cuda_kernels().elementwise.concat_last(a_in, b_in);
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t n1 = a.size(-1), n2 = b.size(-1), rows = a.numel() / n1;
  MAMBA_CHECK(b.numel() / n2 == rows);
  Shape shape = a.shape();
  shape.back() = n1 + n2;
  Tensor out = Tensor::empty(shape);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(out.f32() + r * (n1 + n2), a.f32() + r * n1, static_cast<size_t>(n1) * 4);
    std::memcpy(out.f32() + r * (n1 + n2) + n1, b.f32() + r * n2, static_cast<size_t>(n2) * 4);
  }
  return out;
}

Tensor embedding(Exec& exec, const Tensor& ids_in, const Tensor& table) {
  OpScope op_scope(exec, "embedding", table.device());
  if (table.device() == Device::cuda) return cuda_kernels().elementwise.embedding(ids_in, table);
  const Tensor ids = ids_in.contiguous();
  MAMBA_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32);
  const int64_t n = ids.numel(), d = table.size(1), vocab = table.size(0);
  Shape shape = ids.shape();
  shape.push_back(d);
  Tensor out = Tensor::empty(shape);
  MAMBA_CHECK(table.dtype() == DType::f32 || table.is_contiguous(),
              "a quantized embedding table is used as stored");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids.dtype() == DType::i64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
    if (id < 0 || id >= vocab)
      throw_error(ErrorCode::out_of_range, "token id ", id, " at position ", i,
                  " is outside the vocabulary [0, ", vocab, ")");
    if (table.dtype() == DType::f32) {
      std::memcpy(out.f32() + i * d, table.f32() + id * d, static_cast<size_t>(d) * 4);
    } else {  // bf16 / a block format used in place (a GGUF): only the looked-up row is decoded
      const size_t row_bytes = dtype_bytes(table.dtype(), d);
      dequantize_row(table.dtype(),
                     static_cast<const uint8_t*>(table.raw()) + static_cast<size_t>(id) * row_bytes, d,
                     out.f32() + i * d);
    }
  }
  return out;
}

Tensor neg_exp(Exec& exec, const Tensor& x_in) {
  MAMBA_CHECK(x_in.dtype() == DType::f32, "neg_exp takes f32, got " << dtype_name(x_in.dtype()));
  OpScope op_scope(exec, "neg_exp", x_in.device());
  if (x_in.device() == Device::cuda) return cuda_kernels().elementwise.neg_exp(x_in);
  const Tensor x = x_in.contiguous();
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.f32()[i] = -std::exp(x.f32()[i]);
  return out;
}

}  // namespace mamba::ops
