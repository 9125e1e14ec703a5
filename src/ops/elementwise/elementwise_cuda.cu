// Elementwise ops on CUDA: one thread per output element (grid-stride). Inputs that are column
// views (rows strided, last dim contiguous) are read in place through a Rows descriptor.
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/elementwise/elementwise.h"
#include "ops/elementwise/gate_act.h"

namespace mamba::ops {

namespace {

using mamba::cuda::grid_for;

// A [outer, inner, n] f32 view with a contiguous last dim: row r starts at
// data + (r / inner)·outer_stride + (r % inner)·inner_stride.
struct Rows {
  const float* data;
  int64_t inner, outer_stride, inner_stride;
  __device__ const float* row(int64_t r) const {
    return data + (r / inner) * outer_stride + (r % inner) * inner_stride;
  }
};

// Rows of t (made contiguous first when its layout does not fit the descriptor).
Rows rows_of(const Tensor& t, Tensor& keep) {
  mamba::cuda::check_cuda_tensor(t, "elementwise input");
  MAMBA_CHECK(t.dtype() == DType::f32, "elementwise ops take f32, got " << dtype_name(t.dtype()));
  keep = (t.stride(-1) == 1 && t.dim() <= 3) ? t : t.contiguous();
  const int64_t d = keep.dim();
  if (d == 3) return {keep.f32(), keep.size(1), keep.stride(0), keep.stride(1)};
  if (d == 2) return {keep.f32(), keep.size(0), 0, keep.stride(0)};
  if (d > 3) return {keep.f32(), keep.numel() / keep.size(-1), 0, keep.size(-1)};  // contiguous (above)
  return {keep.f32(), 1, 0, 0};
}

__global__ void add_kernel(float* a, const float* b, int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    a[i] += b[i];
  }
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    x[i] *= s;
  }
}

// out[r, i] = act(gate)·value with gate = h[r, gate_off + i], value = h[r, value_off + i].
template <GateAct A>
__global__ void gated_act_kernel(Rows h, float* out, int64_t rows, int64_t n, int64_t gate_off,
                                 int64_t value_off) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    const int64_t r = idx / n, i = idx % n;
    const float* a = h.row(r);
    out[idx] = gate_act::value<A>(a[gate_off + i]) * a[value_off + i];
  }
}

template <GateAct A>
__global__ void activation_kernel(Rows x, float* out, int64_t rows, int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    out[idx] = gate_act::value<A>(x.row(idx / n)[idx % n]);
  }
}

// out[r, i] = gate_first ? silu(h[r, i])·h[r, n + i] : h[r, i]·silu(h[r, n + i]).
__global__ void swiglu_kernel(Rows h, float* out, int64_t rows, int64_t n, bool gate_first) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    const int64_t r = idx / n, i = idx % n;
    const float* a = h.row(r);
    out[idx] = gate_first ? mamba::cuda::silu_f(a[i]) * a[n + i] : a[i] * mamba::cuda::silu_f(a[n + i]);
  }
}

__global__ void mul_silu_kernel(float* y, Rows z, int64_t rows, int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    y[idx] *= mamba::cuda::silu_f(z.row(idx / n)[idx % n]);
  }
}

__global__ void softplus_bias_clamp_kernel(Rows raw, const float* bias, float* out, int64_t rows, int64_t n,
                                           float lo, float hi) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    const int64_t i = idx % n;
    out[idx] = fminf(fmaxf(mamba::cuda::softplus_f(raw.row(idx / n)[i] + bias[i]), lo), hi);
  }
}

__global__ void concat_last_kernel(Rows a, Rows b, float* out, int64_t rows, int64_t n1, int64_t n2) {
  const int64_t n = n1 + n2;
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    const int64_t r = idx / n, i = idx % n;
    out[idx] = i < n1 ? a.row(r)[i] : b.row(r)[i - n1];
  }
}

template <typename Id>
__global__ void embedding_kernel(const Id* ids, const float* table, float* out, int64_t n, int64_t d) {
  MAMBA_GRID_STRIDE_LOOP(idx, n * d) {
    out[idx] = table[static_cast<int64_t>(ids[idx / d]) * d + idx % d];
  }
}

// −exp through double: the float rounding of a (nearly) correctly rounded exp, i.e. the host's
// std::exp(float) bits except on rare double-rounding ties.
__global__ void neg_exp_kernel(const float* x, float* out, int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    out[i] = -static_cast<float>(exp(static_cast<double>(x[i])));
  }
}

}  // namespace

void add_cuda_(Tensor& a, const Tensor& b) {
  mamba::cuda::check_cuda_tensor(b, "add_: b");
  MAMBA_CHECK(a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous());
  const int64_t n = a.numel();
  if (n == 0) return;
  add_kernel<<<grid_for(n), 256, 0, mamba::cuda::stream()>>>(a.f32(), b.f32(), n);
  CUDA_CHECK_LAUNCH();
}

void scale_cuda_(Tensor& x, float s) {
  mamba::cuda::check_cuda_tensor(x, "scale_: x");
  MAMBA_CHECK(x.is_contiguous() && x.dtype() == DType::f32,
              "scale_: expected a contiguous f32 tensor, got " << dtype_name(x.dtype()));
  const int64_t n = x.numel();
  if (n == 0) return;
  scale_kernel<<<grid_for(n), 256, 0, mamba::cuda::stream()>>>(x.f32(), s, n);
  CUDA_CHECK_LAUNCH();
}

Tensor gated_act_cuda(const Tensor& h, GateAct act, bool gate_first) {
  MAMBA_CHECK(h.dim() >= 1 && h.size(-1) % 2 == 0, "gated_act: odd last dim in " << shape_str(h.shape()));
  Tensor keep;
  const Rows rows_h = rows_of(h, keep);
  const int64_t n = h.size(-1) / 2, rows = n == 0 ? 0 : h.numel() / (2 * n);
  Shape shape = h.shape();
  shape.back() = n;
  Tensor out = Tensor::empty(shape, DType::f32, Device::cuda);
  if (rows * n == 0) return out;
  const int64_t gate_off = gate_first ? 0 : n, value_off = gate_first ? n : 0;
  gate_act::dispatch(act, [&](auto a) {
    gated_act_kernel<decltype(a)::value><<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(
        rows_h, out.f32(), rows, n, gate_off, value_off);
  });
  CUDA_CHECK_LAUNCH();
  return out;
}

Tensor activation_cuda(const Tensor& x, GateAct act) {
  MAMBA_CHECK(x.dim() >= 1, "activation: expected at least one dimension");
  Tensor keep;
  const Rows rows_x = rows_of(x, keep);
  const int64_t n = x.size(-1), rows = n == 0 ? 0 : x.numel() / n;
  Tensor out = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  if (rows * n == 0) return out;
  gate_act::dispatch(act, [&](auto a) {
    activation_kernel<decltype(a)::value>
        <<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(rows_x, out.f32(), rows, n);
  });
  CUDA_CHECK_LAUNCH();
  return out;
}

Tensor swiglu_cuda(const Tensor& h, bool gate_first) {
  MAMBA_CHECK(h.size(-1) % 2 == 0);
  Tensor keep;
  const Rows rows_h = rows_of(h, keep);
  const int64_t n = h.size(-1) / 2, rows = h.numel() / (2 * n);
  Shape shape = h.shape();
  shape.back() = n;
  Tensor out = Tensor::empty(shape, DType::f32, Device::cuda);
  if (rows * n == 0) return out;
  swiglu_kernel<<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(rows_h, out.f32(), rows, n,
                                                                       gate_first);
  CUDA_CHECK_LAUNCH();
  return out;
}

void mul_silu_cuda_(Tensor& y, const Tensor& z) {
  MAMBA_CHECK(y.is_contiguous() && y.dim() == 3 && z.dim() == 3 && y.shape() == z.shape());
  Tensor keep;
  const Rows rows_z = rows_of(z, keep);
  const int64_t n = y.size(2), rows = y.size(0) * y.size(1);
  if (rows * n == 0) return;
  mul_silu_kernel<<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(y.f32(), rows_z, rows, n);
  CUDA_CHECK_LAUNCH();
}

Tensor softplus_bias_clamp_cuda(const Tensor& raw, const Tensor& bias, float lo, float hi) {
  MAMBA_CHECK(raw.dim() == 3 && bias.numel() == raw.size(2));
  mamba::cuda::check_cuda_tensor(bias, "softplus_bias_clamp: bias");
  Tensor keep;
  const Rows rows_raw = rows_of(raw, keep);
  const int64_t n = raw.size(2), rows = raw.size(0) * raw.size(1);
  Tensor out = Tensor::empty({raw.size(0), raw.size(1), n}, DType::f32, Device::cuda);
  if (rows * n == 0) return out;
  softplus_bias_clamp_kernel<<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(
      rows_raw, bias.f32(), out.f32(), rows, n, lo, hi);
  CUDA_CHECK_LAUNCH();
  return out;
}

Tensor concat_last_cuda(const Tensor& a, const Tensor& b) {
  Tensor keep_a, keep_b;
  const Rows rows_a = rows_of(a, keep_a), rows_b = rows_of(b, keep_b);
  const int64_t n1 = a.size(-1), n2 = b.size(-1), rows = a.numel() / n1;
  MAMBA_CHECK(b.numel() / n2 == rows);
  Shape shape = a.shape();
  shape.back() = n1 + n2;
  Tensor out = Tensor::empty(shape, DType::f32, Device::cuda);
  if (rows == 0) return out;
  concat_last_kernel<<<grid_for(rows * (n1 + n2)), 256, 0, mamba::cuda::stream()>>>(rows_a, rows_b, out.f32(),
                                                                                    rows, n1, n2);
  CUDA_CHECK_LAUNCH();
  return out;
}

Tensor embedding_cuda(const Tensor& ids_in, const Tensor& table) {
  MAMBA_CHECK(ids_in.dtype() == DType::i64 || ids_in.dtype() == DType::i32);
  MAMBA_CHECK(table.dtype() == DType::f32 && table.is_contiguous());
  // Ids are validated on the host (the contract: Error(out_of_range) naming the position), then
  // copied to the device; a decode step moves a few bytes.
  const Tensor host_ids =
      ids_in.device() == Device::cpu ? ids_in.contiguous() : ids_in.to(Device::cpu).contiguous();
  const int64_t n = host_ids.numel(), d = table.size(1), vocab = table.size(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id =
        host_ids.dtype() == DType::i64 ? host_ids.data<int64_t>()[i] : host_ids.data<int32_t>()[i];
    if (id < 0 || id >= vocab)
      throw_error(ErrorCode::out_of_range, "token id ", id, " at position ", i,
                  " is outside the vocabulary [0, ", vocab, ")");
  }
  const Tensor ids = ids_in.device() == Device::cuda ? ids_in.contiguous() : host_ids.to(Device::cuda);
  Shape shape = ids.shape();
  shape.push_back(d);
  Tensor out = Tensor::empty(shape, DType::f32, Device::cuda);
  if (n * d == 0) return out;
  if (ids.dtype() == DType::i64) {
    embedding_kernel<<<grid_for(n * d), 256, 0, mamba::cuda::stream()>>>(ids.data<int64_t>(), table.f32(),
                                                                         out.f32(), n, d);
  } else {
    embedding_kernel<<<grid_for(n * d), 256, 0, mamba::cuda::stream()>>>(ids.data<int32_t>(), table.f32(),
                                                                         out.f32(), n, d);
  }
  CUDA_CHECK_LAUNCH();
  return out;
}

Tensor neg_exp_cuda(const Tensor& x_in) {
  mamba::cuda::check_cuda_tensor(x_in, "neg_exp: x");
  const Tensor x = x_in.contiguous();
  Tensor out = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  const int64_t n = x.numel();
  if (n == 0) return out;
  neg_exp_kernel<<<grid_for(n), 256, 0, mamba::cuda::stream()>>>(x.f32(), out.f32(), n);
  CUDA_CHECK_LAUNCH();
  return out;
}

}  // namespace mamba::ops
