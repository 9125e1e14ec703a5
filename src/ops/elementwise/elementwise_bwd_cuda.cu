// Backward of the elementwise ops on CUDA (see elementwise.h): one thread per element
// (grid-stride) on contiguous copies of the inputs (column views are made contiguous on the
// device); the softplus bias gradient is a deterministic two-stage column sum, and the embedding
// gradient a chunked deterministic sum for small tables or an atomicAdd scatter into large ones.
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "backend/cuda/reduce.h"
#include "core/error.h"
#include "ops/elementwise/elementwise.h"
#include "ops/elementwise/gate_act.h"

namespace mamba::ops {

namespace {

using mamba::cuda::grid_for;
using mamba::cuda::silu_f;

// Embedding tables of at most kSmallVocab rows take the chunked path (embedding_bwd_chunk_kernel).
constexpr int64_t kSmallVocab = 32;
constexpr int kEmbCols = 32, kEmbLanes = 8;
constexpr int64_t kEmbChunkRows = 256;  // tokens per chunk (at least)

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

// g[value] = d·act(gate), g[gate] = d·value·act'(gate) per row of h [rows, 2n].
template <GateAct A>
__global__ void gated_act_bwd_kernel(const float* dout, const float* h, float* dh, int64_t rows, int64_t n,
                                     int64_t gate_off, int64_t value_off) {
  MAMBA_GRID_STRIDE_LOOP(idx, rows * n) {
    const int64_t r = idx / n, i = idx % n;
    const float* a = h + r * 2 * n;
    float* g = dh + r * 2 * n;
    const float gate = a[gate_off + i], value = a[value_off + i], d = dout[idx];
    g[value_off + i] = d * gate_act::value<A>(gate);
    g[gate_off + i] = d * value * gate_act::grad<A>(gate);
  }
}

template <GateAct A>
__global__ void activation_bwd_kernel(const float* dout, const float* x, float* dx, int64_t n) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    dx[i] = dout[i] * gate_act::grad<A>(x[i]);
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

// Large vocabularies: a scatter with atomicAdd (ids spread over many rows, little contention).
// An id outside the table is skipped (device ids are not read back to the host; see below).
template <typename Id>
__global__ void embedding_bwd_kernel(const Id* ids, const float* dout, float* dtable, int64_t n, int64_t d,
                                     int64_t vocab) {
  MAMBA_GRID_STRIDE_LOOP(idx, n * d) {
    const int64_t id = static_cast<int64_t>(ids[idx / d]);
    if (id >= 0 && id < vocab) atomicAdd(dtable + id * d + idx % d, dout[idx]);
  }
}

// Small vocabularies (a task's few symbols): every token adds into the same few rows, so atomics
// serialize on a handful of addresses. Instead a block per (32-column tile, chunk of tokens) sums
// its chunk per table row in shared memory, each thread owning one column of one row lane (no
// races), and reduces the lanes in order into partial [chunk, vocab, d]; column_sum_add then sums
// the chunks into the table. Deterministic. blockDim = (kEmbCols, kEmbLanes).
template <typename Id>
__global__ void embedding_bwd_chunk_kernel(const Id* ids, const float* dout, int64_t n, int64_t d,
                                           int64_t vocab, int64_t rows_per_chunk, float* partial) {
  extern __shared__ float acc[];  // [kEmbLanes, vocab, kEmbCols]
  const int64_t c = blockIdx.x * int64_t(kEmbCols) + threadIdx.x;
  const int64_t begin = blockIdx.y * rows_per_chunk;
  const int64_t end = begin + rows_per_chunk < n ? begin + rows_per_chunk : n;
  float* mine = acc + threadIdx.y * vocab * kEmbCols + threadIdx.x;
  for (int64_t v = 0; v < vocab; ++v) mine[v * kEmbCols] = 0.0f;
  if (c < d)
    for (int64_t i = begin + threadIdx.y; i < end; i += kEmbLanes) {
      const int64_t id = static_cast<int64_t>(ids[i]);
      if (id >= 0 && id < vocab) mine[id * kEmbCols] += dout[i * d + c];
    }
  __syncthreads();
  for (int64_t v = threadIdx.y; v < vocab; v += kEmbLanes) {
    float sum = 0.0f;
    for (int l = 0; l < kEmbLanes; ++l) sum += acc[(l * vocab + v) * kEmbCols + threadIdx.x];
    if (c < d) partial[(blockIdx.y * vocab + v) * d + c] = sum;
  }
}

template <typename Id>
void embedding_bwd_launch(const Id* ids, const float* dout, float* dtable, int64_t n, int64_t d,
                          int64_t vocab) {
  cudaStream_t stream = mamba::cuda::stream();
  if (vocab > kSmallVocab) {
    embedding_bwd_kernel<<<grid_for(n * d), 256, 0, stream>>>(ids, dout, dtable, n, d, vocab);
    CUDA_CHECK_LAUNCH();
    return;
  }
  const int64_t col_tiles = (d + kEmbCols - 1) / kEmbCols;
  const mamba::cuda::RowChunks rc = mamba::cuda::row_chunks(n, col_tiles, kEmbChunkRows);
  const Tensor partial = Tensor::empty({rc.chunks, vocab, d}, DType::f32, Device::cuda);
  const size_t smem = static_cast<size_t>(kEmbLanes * vocab * kEmbCols) * sizeof(float);
  embedding_bwd_chunk_kernel<<<dim3(static_cast<unsigned int>(col_tiles),
                                    static_cast<unsigned int>(rc.chunks)),
                               dim3(kEmbCols, kEmbLanes), smem, stream>>>(ids, dout, n, d, vocab,
                                                                          rc.rows_per_chunk, partial.f32());
  CUDA_CHECK_LAUNCH();
  mamba::cuda::column_sum_add(partial.f32(), rc.chunks, vocab * d, vocab * d, dtable, stream);
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

Tensor gated_act_bwd_cuda(const Tensor& dout_in, const Tensor& h_in, GateAct act, bool gate_first) {
  const Tensor h = contiguous_f32(h_in, "gated_act_bwd: h"),
               dout = contiguous_f32(dout_in, "gated_act_bwd: dout");
  MAMBA_CHECK(h.dim() >= 1 && h.size(-1) % 2 == 0, "gated_act_bwd: odd last dim in " << shape_str(h.shape()));
  const int64_t n = h.size(-1) / 2, rows = n == 0 ? 0 : h.numel() / (2 * n);
  MAMBA_CHECK(dout.numel() == rows * n && dout.size(-1) == n,
              "gated_act_bwd: dout " << shape_str(dout.shape()) << " h " << shape_str(h.shape()));
  Tensor dh = Tensor::empty(h.shape(), DType::f32, Device::cuda);
  if (rows * n == 0) return dh;
  const int64_t gate_off = gate_first ? 0 : n, value_off = gate_first ? n : 0;
  gate_act::dispatch(act, [&](auto a) {
    gated_act_bwd_kernel<decltype(a)::value><<<grid_for(rows * n), 256, 0, mamba::cuda::stream()>>>(
        dout.f32(), h.f32(), dh.f32(), rows, n, gate_off, value_off);
  });
  CUDA_CHECK_LAUNCH();
  return dh;
}

Tensor activation_bwd_cuda(const Tensor& dout_in, const Tensor& x_in, GateAct act) {
  const Tensor x = contiguous_f32(x_in, "activation_bwd: x"),
               dout = contiguous_f32(dout_in, "activation_bwd: dout");
  MAMBA_CHECK(dout.numel() == x.numel() && x.dim() >= 1 && dout.size(-1) == x.size(-1),
              "activation_bwd: dout " << shape_str(dout.shape()) << " x " << shape_str(x.shape()));
  Tensor dx = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  const int64_t n = x.numel();
  if (n == 0) return dx;
  gate_act::dispatch(act, [&](auto a) {
    activation_bwd_kernel<decltype(a)::value>
        <<<grid_for(n), 256, 0, mamba::cuda::stream()>>>(dout.f32(), x.f32(), dx.f32(), n);
  });
  CUDA_CHECK_LAUNCH();
  return dx;
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
  // Few columns (one per head) over every token: the two-stage reduction spreads the rows over
  // many blocks, in double as the CPU.
  mamba::cuda::column_sum_add(draw.f32(), rows, n, n, dbias.f32(), mamba::cuda::stream());
  return draw;
}

void embedding_bwd_cuda(const Tensor& ids_in, const Tensor& dout_in, Tensor& dtable) {
  MAMBA_CHECK(ids_in.dtype() == DType::i64 || ids_in.dtype() == DType::i32);
  mamba::cuda::check_cuda_tensor(dtable, "embedding_bwd: dtable");
  MAMBA_CHECK(dtable.dtype() == DType::f32 && dtable.is_contiguous() && dtable.dim() == 2);
  const Tensor dout = contiguous_f32(dout_in, "embedding_bwd: dout");
  const int64_t n = ids_in.numel(), d = dtable.size(1), vocab = dtable.size(0);
  MAMBA_CHECK(dout.numel() == n * d,
              "embedding_bwd: dout " << shape_str(dout.shape()) << " for " << n << " ids");
  // Host ids are checked like the forward's, with its Error(out_of_range). Device ids (the
  // training step's, already checked by the forward's embedding) are not read back: that would
  // synchronize the host with the whole backward once per step; the kernels skip an id outside
  // the table instead of writing out of bounds.
  Tensor ids = ids_in.contiguous();
  if (ids.device() == Device::cpu) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = ids.dtype() == DType::i64 ? ids.data<int64_t>()[i] : ids.data<int32_t>()[i];
      if (id < 0 || id >= vocab)
        throw_error(ErrorCode::out_of_range, "token id ", id, " at position ", i,
                    " is outside the vocabulary [0, ", vocab, ")");
    }
    ids = ids.to(Device::cuda);
  }
  if (n * d == 0) return;
  if (ids.dtype() == DType::i64)
    embedding_bwd_launch(ids.data<int64_t>(), dout.f32(), dtable.f32(), n, d, vocab);
  else
    embedding_bwd_launch(ids.data<int32_t>(), dout.f32(), dtable.f32(), n, d, vocab);
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
