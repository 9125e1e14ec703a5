// Backward of the elementwise ops on CUDA (see elementwise.h): one thread per element
// (grid-stride) on contiguous copies of the inputs (column views are made contiguous on the
// device); the softplus bias gradient is a deterministic column sum, and the embedding gradient
// an atomicAdd scatter into the table (repeated ids add in any order).
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/elementwise/elementwise_cuda.h"

namespace mamba::ops {

namespace {

using mamba::cuda::grid_for;
using mamba::cuda::silu_f;

constexpr int kCols = 32, kRowLanes = 32;

__device__ __forceinline__ float silu_grad_f(float v) {
  const float s = mamba::cuda::sigmoid_f(v);
  return s * (1.0f + v * (1.0f - s));
}

// Contiguous f32 device copy of t (t itself when it already is one).
Tensor contiguous_f32(const Tensor& t, const char* name) {
  mamba::cuda::check_cuda_tensor(t, name);
  MAMBA_CHECK(t.dtype() == DType::f32, name << ": expected f32, got " << dtype_name(t.dtype()));
  return t.contiguous();
}

// g[value] = d·silu(gate), g[gate] = d·value·silu'(gate) per row of h [rows, 2n].
__global__ void swiglu_bwd_kernel(const float* dout, const float* h, float* dh, int64_t rows, int64_t n,
                                  bool gate_first) {
  const int64_t gate_off = gate_first ? 0 : n, value_off = gate_first ? n : 0;
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    const int64_t r = idx / n, i = idx % n;
    const float* a = h + r * 2 * n;
    float* g = dh + r * 2 * n;
    const float gate = a[gate_off + i], value = a[value_off + i], d = dout[idx];
    g[value_off + i] = d * silu_f(gate);
    g[gate_off + i] = d * value * silu_grad_f(gate);
  }
}

__global__ void mul_silu_bwd_kernel(const float* dout, const float* y, const float* z, float* dy, float* dz,
                                    int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    dy[i] = dout[i] * silu_f(z[i]);
    dz[i] = dout[i] * y[i] * silu_grad_f(z[i]);
  }
}

// draw = dout·softplus'(raw + bias) where the clamp passes the value (lo ≤ softplus ≤ hi).
__global__ void softplus_bias_clamp_bwd_kernel(const float* dout, const float* raw, const float* bias,
                                               float* draw, int64_t total, int64_t n, float lo, float hi) {
  MAMBA_GRID_STRIDE_LOOP(i, total) {
    const float v = raw[i] + bias[i % n], sp = mamba::cuda::softplus_f(v);
    const float grad = v <= 20.0f ? mamba::cuda::sigmoid_f(v) : 1.0f;
    draw[i] = sp >= lo && sp <= hi ? dout[i] * grad : 0.0f;
  }
}

// out[c] += Σ_r m[r, c]; m: [rows, cols] contiguous. Block = kCols columns × kRowLanes lanes.
__global__ void column_sum_add_kernel(const float* m, int64_t rows, int64_t cols, float* out) {
  __shared__ float part[kRowLanes][kCols + 1];
  const int64_t c = blockIdx.x * int64_t(kCols) + threadIdx.x;
  float acc = 0.0f;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) acc += m[r * cols + c];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float sum = 0.0f;
    for (int i = 0; i < kRowLanes; ++i) sum += part[i][threadIdx.x];
    out[c] += sum;
  }
}

template <typename Id>
__global__ void embedding_bwd_kernel(const Id* ids, const float* dout, float* dtable, int64_t n, int64_t d) {
  MAMBA_GRID_STRIDE_LOOP(idx, n * d) {
    atomicAdd(dtable + static_cast<int64_t>(ids[idx / d]) * d + idx % d, dout[idx]);
  }
}

__global__ void neg_exp_bwd_kernel(const float* dA, const float* A, float* dA_log, int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    dA_log[i] += dA[i] * A[i];
  }
}

}  // namespace

Tensor swiglu_bwd_cuda(const Tensor& dout_in, const Tensor& h_in, bool gate_first) {
  const Tensor h = contiguous_f32(h_in, "swiglu_bwd: h"), dout = contiguous_f32(dout_in, "swiglu_bwd: dout");
  MAMBA_CHECK(h.size(-1) % 2 == 0);
  const int64_t n = h.size(-1) / 2, rows = n == 0 ? 0 : h.numel() / (2 * n);
  MAMBA_CHECK(dout.numel() == rows * n && dout.size(-1) == n,
              "swiglu_bwd: dout " << shape_str(dout.shape()) << " h " << shape_str(h.shape()));
  Tensor dh = Tensor::empty(h.shape(), DType::f32, Device::cuda);
  if (rows * n == 0) return dh;
  swiglu_bwd_kernel<<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(dout.f32(), h.f32(), dh.f32(),
                                                                           rows, n, gate_first);
  CUDA_CHECK_LAUNCH();
  return dh;
}

void mul_silu_bwd_cuda(const Tensor& dout_in, const Tensor& y_in, const Tensor& z_in, Tensor& dy,
                       Tensor& dz) {
  const Tensor dout = contiguous_f32(dout_in, "mul_silu_bwd: dout"),
               y = contiguous_f32(y_in, "mul_silu_bwd: y"), z = contiguous_f32(z_in, "mul_silu_bwd: z");
  MAMBA_CHECK(dout.shape() == y.shape() && z.shape() == y.shape());
  dy = Tensor::empty(y.shape(), DType::f32, Device::cuda);
  dz = Tensor::empty(y.shape(), DType::f32, Device::cuda);
  const int64_t n = y.numel();
  if (n == 0) return;
  mul_silu_bwd_kernel<<<grid_for(n), 256, 0, mamba::cuda::stream()>>>(dout.f32(), y.f32(), z.f32(), dy.f32(),
                                                                      dz.f32(), n);
  CUDA_CHECK_LAUNCH();
}

Tensor softplus_bias_clamp_bwd_cuda(const Tensor& dout_in, const Tensor& raw_in, const Tensor& bias, float lo,
                                    float hi, Tensor& dbias) {
  const Tensor dout = contiguous_f32(dout_in, "softplus_bias_clamp_bwd: dout"),
               raw = contiguous_f32(raw_in, "softplus_bias_clamp_bwd: raw");
  mamba::cuda::check_cuda_tensor(bias, "softplus_bias_clamp_bwd: bias");
  mamba::cuda::check_cuda_tensor(dbias, "softplus_bias_clamp_bwd: dbias");
  const int64_t n = raw.size(-1), rows = n == 0 ? 0 : raw.numel() / n;
  MAMBA_CHECK(dout.shape() == raw.shape() && bias.numel() == n && dbias.numel() == n);
  MAMBA_CHECK(bias.is_contiguous() && bias.dtype() == DType::f32 && dbias.is_contiguous() &&
              dbias.dtype() == DType::f32);
  Tensor draw = Tensor::empty(raw.shape(), DType::f32, Device::cuda);
  if (rows * n == 0) return draw;
  softplus_bias_clamp_bwd_kernel<<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(
      dout.f32(), raw.f32(), bias.f32(), draw.f32(), rows * n, n, lo, hi);
  CUDA_CHECK_LAUNCH();
  column_sum_add_kernel<<<mamba::cuda::ceil_div(n, kCols), dim3(kCols, kRowLanes), 0,
                          mamba::cuda::stream()>>>(draw.f32(), rows, n, dbias.f32());
  CUDA_CHECK_LAUNCH();
  return draw;
}

void embedding_bwd_cuda(const Tensor& ids_in, const Tensor& dout_in, Tensor& dtable) {
  MAMBA_CHECK(ids_in.dtype() == DType::i64 || ids_in.dtype() == DType::i32);
  mamba::cuda::check_cuda_tensor(dtable, "embedding_bwd: dtable");
  MAMBA_CHECK(dtable.dtype() == DType::f32 && dtable.is_contiguous() && dtable.dim() == 2);
  const Tensor dout = contiguous_f32(dout_in, "embedding_bwd: dout");
  // Ids are checked on the host like the forward's, with its Error(out_of_range) (an id out of
  // range would scatter out of bounds), then used from the device.
  const Tensor host_ids =
      ids_in.device() == Device::cpu ? ids_in.contiguous() : ids_in.to(Device::cpu).contiguous();
  const int64_t n = host_ids.numel(), d = dtable.size(1), vocab = dtable.size(0);
  MAMBA_CHECK(dout.numel() == n * d,
              "embedding_bwd: dout " << shape_str(dout.shape()) << " for " << n << " ids");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id =
        host_ids.dtype() == DType::i64 ? host_ids.data<int64_t>()[i] : host_ids.data<int32_t>()[i];
    if (id < 0 || id >= vocab)
      throw_error(ErrorCode::out_of_range, "token id ", id, " at position ", i,
                  " is outside the vocabulary [0, ", vocab, ")");
  }
  if (n * d == 0) return;
  const Tensor ids = ids_in.device() == Device::cuda ? ids_in.contiguous() : host_ids.to(Device::cuda);
  if (ids.dtype() == DType::i64) {
    embedding_bwd_kernel<<<grid_for(n * d), 256, 0, mamba::cuda::stream()>>>(ids.data<int64_t>(), dout.f32(),
                                                                             dtable.f32(), n, d);
  } else {
    embedding_bwd_kernel<<<grid_for(n * d), 256, 0, mamba::cuda::stream()>>>(ids.data<int32_t>(), dout.f32(),
                                                                             dtable.f32(), n, d);
  }
  CUDA_CHECK_LAUNCH();
}

void neg_exp_bwd_cuda(const Tensor& dA, const Tensor& A, Tensor& dA_log) {
  mamba::cuda::check_cuda_tensor(dA, "neg_exp_bwd: dA");
  mamba::cuda::check_cuda_tensor(A, "neg_exp_bwd: A");
  mamba::cuda::check_cuda_tensor(dA_log, "neg_exp_bwd: dA_log");
  MAMBA_CHECK(dA.shape() == A.shape() && dA_log.numel() == A.numel() && dA.is_contiguous() &&
              A.is_contiguous() && dA_log.is_contiguous());
  MAMBA_CHECK(dA.dtype() == DType::f32 && A.dtype() == DType::f32 && dA_log.dtype() == DType::f32);
  const int64_t n = A.numel();
  if (n == 0) return;
  neg_exp_bwd_kernel<<<grid_for(n), 256, 0, mamba::cuda::stream()>>>(dA.f32(), A.f32(), dA_log.f32(), n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mamba::ops
