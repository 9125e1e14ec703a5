// Front of the Mamba-3 scan (forward, reference, step): checks every tensor once, packs the sizes
// (mamba3_scan_params.h) and runs the CPU kernels (mamba3_scan_cpu.cpp) or the CUDA scan through
// the kernel table.
#include "ops/mamba3_scan/mamba3_scan.h"

#include <algorithm>
#include <initializer_list>

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/mamba3_scan/mamba3_scan_params.h"

namespace mamba::ops {

namespace {

using Dims = Mamba3ScanDims;
constexpr int64_t kMaxRank = kMamba3MaxRank;

// Shape test without building a Shape (the step validates per token and must not allocate).
bool has_shape(const Tensor& t, std::initializer_list<int64_t> dims) {
  if (!t.defined() || t.dim() != static_cast<int64_t>(dims.size())) return false;
  int64_t i = 0;
  for (int64_t size : dims) {
    if (t.size(i++) != size) return false;
  }
  return true;
}

Dims check_args(const Mamba3ScanArgs& a, const Mamba3ScanState& s, Tensor& y) {
  MAMBA_CHECK(a.x.defined() && a.x.dim() == 4, "x must be [batch, seq_len, n_heads, head_dim]");
  MAMBA_CHECK(a.q.defined() && a.q.dim() == 5, "q must be [batch, seq_len, mimo_rank, n_heads, d_state]");
  const Dims d{a.x.size(0), a.x.size(1), a.q.size(2), a.x.size(2), a.x.size(3), a.q.size(4)};
  const int64_t B = d.batch, L = d.seq_len, R = d.mimo_rank, H = d.n_heads, P = d.head_dim, N = d.d_state;
  MAMBA_CHECK(L >= 1 && a.chunk_size >= 1, "seq_len " << L << ", chunk_size " << a.chunk_size);
  MAMBA_CHECK(has_shape(a.q, {B, L, R, H, N}) && has_shape(a.k, {B, L, R, H, N}),
              "q " << shape_str(a.q.shape()) << " and k " << shape_str(a.k.shape())
                   << " must be [batch, seq_len, mimo_rank, n_heads, d_state] with x "
                   << shape_str(a.x.shape()));
  MAMBA_CHECK(has_shape(a.adt, {B, L, H}) && has_shape(a.dt, {B, L, H}) && has_shape(a.trap, {B, L, H}),
              "adt/dt/trap must be [batch, seq_len, n_heads]");
  MAMBA_CHECK(has_shape(a.D, {H}), "D must be [n_heads]");
  if (a.mimo_x.defined()) {
    MAMBA_CHECK(has_shape(a.mimo_x, {H, R, P}) && a.mimo_x.dtype() == DType::f32 && a.mimo_x.is_contiguous(),
                "mimo_x " << shape_str(a.mimo_x.shape()) << " must be f32 [n_heads, mimo_rank, head_dim]");
  } else {
    MAMBA_CHECK(R == 1, "SISO (no mimo_x) needs mimo_rank 1, got " << R);
  }
  MAMBA_CHECK(R <= kMaxRank, "mimo_rank " << R << " > " << kMaxRank);
  MAMBA_CHECK(has_shape(s.ssm, {B, H, P, N}), "state.ssm must be [batch, n_heads, head_dim, d_state]");
  MAMBA_CHECK(has_shape(s.k_prev, {B, R, H, N}), "state.k_prev must be [batch, mimo_rank, n_heads, d_state]");
  MAMBA_CHECK(has_shape(s.v_prev, {B, H, P}), "state.v_prev must be [batch, n_heads, head_dim]");
  if (!y.defined()) y = Tensor::empty({B, L, R, H, P});
  MAMBA_CHECK(has_shape(y, {B, L, R, H, P}),
              "y " << shape_str(y.shape()) << " must be [batch, seq_len, mimo_rank, n_heads, head_dim]");
  for (const Tensor* t : {&a.x, &a.q, &a.k, &a.adt, &a.dt, &a.trap, &a.D, &s.ssm, &s.k_prev, &s.v_prev,
                          static_cast<const Tensor*>(&y)}) {
    MAMBA_CHECK(t->dtype() == DType::f32 && t->is_contiguous() && t->device() == Device::cpu,
                "mamba3_scan: CPU tensors must be f32 and contiguous");
  }
  return d;
}

}  // namespace

void mamba3_scan_fwd(Exec& exec, const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y) {
  OpScope op_scope(exec, "mamba3_scan_fwd", args.x.device());
  // CUDA: one entry; the launcher takes the tensor-core scan or the simple one by shape.
  if (args.x.device() == Device::cuda) return cuda_kernels().mamba3_scan.scan(args, state, y);
  const Dims d = check_args(args, state, y);
  if (d.seq_len == 1) return cpu::mamba3_scan_one_token(args, state, y, d);  // decode: the recurrence
  cpu::mamba3_scan_chunked(args, state, y, d);
}

void mamba3_scan_ref(Exec& exec, const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y) {
  OpScope op_scope(exec, "mamba3_scan_ref", args.x.device());
  if (args.x.device() == Device::cuda) return cuda_kernels().mamba3_scan.scan(args, state, y);
  const Dims d = check_args(args, state, y);
  cpu::mamba3_scan_recurrent(args, state, y, d);
}

void mamba3_scan_step(Exec& exec, const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y) {
  OpScope op_scope(exec, "mamba3_scan_step", args.x.device());
  if (args.x.device() == Device::cuda) return cuda_kernels().mamba3_scan.scan(args, state, y);
  const Dims d = check_args(args, state, y);
  MAMBA_CHECK(d.seq_len == 1, "mamba3_scan_step takes one token, got seq_len " << d.seq_len);
  cpu::mamba3_scan_one_token(args, state, y, d);
}

}  // namespace mamba::ops
