// Front of the backward of causal GQA attention and of rotary embeddings: checks, packs the shapes
// (attention_params.h) and runs the CPU kernel (attention_bwd_cpu.cpp) or the CUDA one through the
// kernel table.
#include "core/error.h"
#include "ops/attention/attention.h"
#include "ops/attention/attention_params.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

void attention_bwd(Exec& exec, const Tensor& dout_in, const Tensor& q, const Tensor& k, const Tensor& v,
                   float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  OpScope op_scope(exec, "attention_bwd", q.device());
  if (q.device() == Device::cuda) return cuda_kernels().attention.bwd(dout_in, q, k, v, scale, dq, dk, dv);
  MAMBA_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous() && k.shape() == v.shape(),
              "attention_bwd: q, k, v must be contiguous and k " << shape_str(k.shape()) << " shaped as v "
                                                                 << shape_str(v.shape()));
  const Tensor dout = dout_in.contiguous();
  AttentionBwdParams p{};
  p.batch = q.size(0);
  p.seq_len = q.size(1);
  p.n_heads = q.size(2);
  p.head_dim = q.size(3);
  p.n_kv = k.size(2);
  p.scale = scale;
  MAMBA_CHECK(dout.shape() == q.shape() && k.size(1) == p.seq_len && k.size(3) == p.head_dim && p.n_kv > 0 &&
                  p.n_heads % p.n_kv == 0,
              "attention_bwd: dout " << shape_str(dout.shape()) << " must be q's " << shape_str(q.shape())
                                     << ", k " << shape_str(k.shape())
                                     << " [batch, seq_len, n_kv, head_dim] with n_heads a multiple of n_kv");
  cpu::attention_bwd(p, dout, q, k, v, dq, dk, dv);
}

// The transpose of the rotation [c −s; s c] is the rotation by the opposite angle.
void rotary_bwd(Exec& exec, Tensor& dx, int64_t rotary_dim, int64_t pos0, float base, bool interleaved) {
  rotary_rotate(exec, dx, rotary_dim, pos0, base, interleaved, -1.0f);
}

}  // namespace mamba::ops
