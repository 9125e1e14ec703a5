// Front of attention and rotary embeddings: checks, packs the shapes (attention_params.h) and runs
// the CPU kernels (attention_cpu.cpp) or the CUDA ones through the kernel table.
#include "ops/attention/attention.h"

#include "core/error.h"
#include "ops/attention/attention_params.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor attention_fwd(Exec& exec, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t pos,
                     float scale) {
  OpScope op_scope(exec, "attention_fwd", q.device());
  if (q.device() == Device::cuda) return cuda_kernels().attention.fwd(q, k_cache, v_cache, pos, scale);
  MAMBA_CHECK(q.is_contiguous() && k_cache.is_contiguous() && v_cache.is_contiguous(),
              "attention_fwd: q, k_cache and v_cache must be contiguous");
  MAMBA_CHECK(q.dim() == 4 && k_cache.dim() == 4 && v_cache.shape() == k_cache.shape(),
              "attention_fwd: q " << shape_str(q.shape()) << " must be [batch, seq_len, n_heads, head_dim], "
                                  << "k_cache and v_cache [batch, cap, n_kv, head_dim], got "
                                  << shape_str(k_cache.shape()) << " and " << shape_str(v_cache.shape()));
  AttentionParams p{};
  p.batch = q.size(0);
  p.seq_len = q.size(1);
  p.n_heads = q.size(2);
  p.head_dim = q.size(3);
  p.cap = k_cache.size(1);
  p.n_kv = k_cache.size(2);
  p.pos = pos;
  p.scale = scale;
  MAMBA_CHECK(p.pos + p.seq_len <= p.cap && p.n_heads % p.n_kv == 0 && k_cache.size(3) == p.head_dim,
              "attention_fwd: positions " << p.pos << "+" << p.seq_len << " in a cache of " << p.cap
                                          << ", n_heads " << p.n_heads << " a multiple of n_kv " << p.n_kv
                                          << ", head_dim " << p.head_dim << " vs the cache's "
                                          << k_cache.size(3));
  return cpu::attention_fwd(p, q, k_cache, v_cache);
}

void rotary_rotate(Exec& exec, Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved,
                   float sign) {
  OpScope op_scope(exec, "rotary_rotate", x.device());
  if (x.device() == Device::cuda)
    return cuda_kernels().attention.rotary_rotate(x, rotary_dim, pos0, base, interleaved, sign);
  MAMBA_CHECK(x.is_contiguous() && x.dim() == 4 && rotary_dim % 2 == 0 && rotary_dim <= x.size(3),
              "rotary: x " << shape_str(x.shape()) << " must be contiguous [batch, seq_len, heads, head_dim]"
                           << " with an even rotary_dim <= head_dim, got " << rotary_dim);
  if (rotary_dim == 0) return;
  RotaryParams p{};
  p.batch = x.size(0);
  p.seq_len = x.size(1);
  p.heads = x.size(2);
  p.head_dim = x.size(3);
  p.rotary_dim = rotary_dim;
  p.pos0 = pos0;
  p.base = base;
  p.sign = sign;
  p.interleaved = interleaved;
  cpu::rotary_rotate(p, x);
}

void rotary_apply(Exec& exec, Tensor& x, int64_t rotary_dim, int64_t pos0, float base, bool interleaved) {
  rotary_rotate(exec, x, rotary_dim, pos0, base, interleaved, 1.0f);
}

}  // namespace mamba::ops
