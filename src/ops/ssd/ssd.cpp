// Front of the SSD (forward, reference): checks every tensor once, packs the sizes (ssd_params.h)
// and runs the CPU kernels (ssd_cpu.cpp) or the CUDA scan through the kernel table.
#include "ops/ssd/ssd.h"

#include "core/error.h"
#include "ops/device.h"
#include "ops/elementwise/elementwise.h"
#include "ops/kernels.h"
#include "ops/ssd/ssd_params.h"

namespace mamba::ops {

namespace {

SsdDims check_args(const SsdArgs& a, const Tensor& state) {
  MAMBA_CHECK(a.x.dim() == 4 && a.B.dim() == 4,
              "ssd: x " << shape_str(a.x.shape()) << " must be [batch, seq_len, n_heads, head_dim], B "
                        << shape_str(a.B.shape()) << " [batch, seq_len, n_groups, d_state]");
  SsdDims d{};
  d.batch = a.x.size(0);
  d.seq_len = a.x.size(1);
  d.n_heads = a.x.size(2);
  d.head_dim = a.x.size(3);
  d.n_groups = a.B.size(2);
  d.d_state = a.B.size(3);
  MAMBA_CHECK(a.x.is_contiguous() && a.B.is_contiguous() && a.C.is_contiguous() && a.dt.is_contiguous(),
              "ssd: x, dt, B and C must be contiguous");
  MAMBA_CHECK(a.B.shape() == a.C.shape() && d.n_heads % d.n_groups == 0,
              "ssd: C " << shape_str(a.C.shape()) << " must be B's " << shape_str(a.B.shape())
                        << ", n_groups dividing the n_heads of x " << shape_str(a.x.shape()));
  MAMBA_CHECK(a.dt.shape() == (Shape{d.batch, d.seq_len, d.n_heads}),
              "ssd: dt " << shape_str(a.dt.shape()) << " must be [batch, seq_len, n_heads] for x "
                         << shape_str(a.x.shape()));
  MAMBA_CHECK(state.is_contiguous() && state.shape() == (Shape{d.batch, d.n_heads, d.head_dim, d.d_state}),
              "ssd: state " << shape_str(state.shape())
                            << " must be contiguous [batch, n_heads, head_dim, d_state] for x "
                            << shape_str(a.x.shape()) << " and B " << shape_str(a.B.shape()));
  d.heads_per_group = d.n_heads / d.n_groups;
  d.d_per_channel = a.D.numel() == d.n_heads * d.head_dim;
  MAMBA_CHECK(d.d_per_channel || a.D.numel() == d.n_heads,
              "ssd: D " << shape_str(a.D.shape()) << " must be [n_heads] or [n_heads * head_dim]");
  return d;
}

// Δ from a raw dt and its bias (SsdArgs::dt_bias), for the kernels that take Δ.
SsdArgs with_delta(Exec& exec, const SsdArgs& a) {
  SsdArgs d = a;
  d.dt = softplus_bias_clamp(exec, a.dt, a.dt_bias, a.dt_lo, a.dt_hi);
  d.dt_bias = Tensor();
  return d;
}

}  // namespace

Tensor ssd_ref(Exec& exec, const SsdArgs& a, Tensor& state) {
  OpScope op_scope(exec, "ssd_ref", a.x.device());
  if (a.x.device() == Device::cuda) return cuda_kernels().ssd.scan(a, state);
  if (a.dt_bias.defined()) return ssd_ref(exec, with_delta(exec, a), state);
  return cpu::ssd_recurrent(a, state, check_args(a, state));
}

Tensor ssd_fwd(Exec& exec, const SsdArgs& a, Tensor& state) {
  OpScope op_scope(exec, "ssd_fwd", a.x.device());
  // CUDA: one entry; the launcher takes the one-token step, the tensor-core chunked scan or the
  // simple scan by shape (ssd_cuda.cu), and Δ from a raw dt (dt_bias) where the step cannot.
  if (a.x.device() == Device::cuda) return cuda_kernels().ssd.scan(a, state);
  if (a.dt_bias.defined()) return ssd_fwd(exec, with_delta(exec, a), state);
  const SsdDims d = check_args(a, state);
  if (d.seq_len == 1) return cpu::ssd_recurrent(a, state, d);  // one token (decode): the recurrence
  return cpu::ssd_chunked(a, state, d);
}

}  // namespace mamba::ops
