// CPU elementwise ops (see elementwise.h). The front (elementwise.cpp) has checked every shape and
// layout before these run.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/parallel.h"
#include "core/quant_blocks.h"
#include "ops/elementwise/activations.h"
#include "ops/elementwise/elementwise_params.h"
#include "ops/elementwise/gate_act.h"

namespace mamba::ops::cpu {

namespace {
// Pointer to row r of a [batch, seq_len, n] tensor whose rows may be strided.
inline const float* row3(const Tensor& t, int64_t r) {
  const int64_t seq_len = t.size(1);
  return t.f32() + (r / seq_len) * t.stride(0) + (r % seq_len) * t.stride(1);
}
}  // namespace

void add_(Tensor& a, const Tensor& b) {
  float* ap = a.f32();
  const float* bp = b.f32();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) ap[i] += bp[i];
}

void scale_(Tensor& x, float s) {
  float* p = x.f32();
  const int64_t n = x.numel();
  parallel_row_blocks(1, n, [&](int64_t, int64_t c0, int64_t c1) {
    for (int64_t i = c0; i < c1; ++i) p[i] *= s;
  });
}

Tensor gated_act(const ElementwiseRows& p, const RowReader& rows_h, const Tensor& h, GateAct act,
                 bool gate_first) {
  const int64_t n = p.n;
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

Tensor activation(const ElementwiseRows& p, const RowReader& rows_x, const Tensor& x, GateAct act) {
  const int64_t n = p.n;
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

Tensor swiglu(const ElementwiseRows& p, const Tensor& h, bool gate_first) {
  const int64_t n = p.n, rows = p.rows;
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

void mul_silu_(const ElementwiseRows& p, Tensor& y, const Tensor& z) {
  const int64_t n = p.n, rows = p.rows;
  float* yp = y.f32();
  parallel_for(rows, [&](int64_t r) {
    const float* zr = row3(z, r);
    for (int64_t i = 0; i < n; ++i) yp[r * n + i] *= silu(zr[i]);
  });
}

Tensor softplus_bias_clamp(const ElementwiseRows& p, const Tensor& raw, const Tensor& bias, float lo,
                           float hi) {
  const int64_t n = p.n, rows = p.rows;
  Tensor out = Tensor::empty({raw.size(0), raw.size(1), n});
  const float* bp = bias.f32();
  float* op = out.f32();
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = row3(raw, r);
    for (int64_t i = 0; i < n; ++i) op[r * n + i] = std::min(std::max(softplus(src[i] + bp[i]), lo), hi);
  }
  return out;
}

Tensor concat_last(int64_t rows, const Tensor& a, const Tensor& b) {
  const int64_t n1 = a.size(-1), n2 = b.size(-1);
  Shape shape = a.shape();
  shape.back() = n1 + n2;
  Tensor out = Tensor::empty(shape);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(out.f32() + r * (n1 + n2), a.f32() + r * n1, static_cast<size_t>(n1) * 4);
    std::memcpy(out.f32() + r * (n1 + n2) + n1, b.f32() + r * n2, static_cast<size_t>(n2) * 4);
  }
  return out;
}

Tensor embedding(const Tensor& ids, const Tensor& table) {
  const int64_t n = ids.numel(), d = table.size(1);
  Shape shape = ids.shape();
  shape.push_back(d);
  Tensor out = Tensor::empty(shape);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids.dtype() == DType::i64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
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

Tensor neg_exp(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.f32()[i] = -std::exp(x.f32()[i]);
  return out;
}

}  // namespace mamba::ops::cpu
