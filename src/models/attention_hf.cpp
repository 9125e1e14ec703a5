// Attention of the HF hybrids (Llama layout): separate q/k/v/o projections, GQA, no positional
// encoding or rotary on the first rotary_dim dims of each head (rotate_half = GPT-NeoX split),
// optional LoRA adapters on q/k/v (Zamba2's shared block). q|k|v run as one GEMM on a fused
// weight derived at prepare(); the KV cache lives in LayerState like the MHA mixer's.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/architectures.h"
#include "models/families/family.h"
#include "ops/attention/attention.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/quant/quant_linear.h"

namespace mamba::models {

void append_kv(LayerState& st, const Tensor& k, const Tensor& v, int64_t pos) {
  const int64_t batch = k.size(0), seq_len = k.size(1), nkv = k.size(2), hd = k.size(3);
  const int64_t cap = st.k_cache.size(1), need = pos + seq_len;
  if (need > cap) {
    const int64_t new_cap = std::max<int64_t>(need, std::max<int64_t>(2 * cap, 64));
    for (Tensor* cache : {&st.k_cache, &st.v_cache}) {
      Tensor grown = Tensor::zeros({batch, new_cap, nkv, hd}, DType::f32, cache->device());
      if (pos > 0) grown.slice(1, 0, pos).copy_from(cache->slice(1, 0, pos));
      *cache = grown;
    }
  }
  st.k_cache.slice(1, pos, need).copy_from(k);
  st.v_cache.slice(1, pos, need).copy_from(v);
}

// Rows of `parts` stacked into one [Σ rows, cols] tensor (a fused projection weight or bias).
Tensor stack_rows(const std::vector<const Tensor*>& parts) {
  int64_t rows = 0;
  for (const Tensor* p : parts) rows += p->size(0);
  Shape shape = parts[0]->shape();
  shape[0] = rows;
  for (const Tensor* p : parts)  // one part of another type (a GGUF row that fell back): all in f32
    if (p->dtype() != parts[0]->dtype() && p->device() == Device::cpu) {
      std::vector<Tensor> f32;
      for (const Tensor* q : parts) f32.push_back(ops::dequantize(q->contiguous()));
      std::vector<const Tensor*> ptrs;
      for (const Tensor& t : f32) ptrs.push_back(&t);
      return stack_rows(ptrs);
    }
  // Parts stored one after the other in one buffer (a GGUF's q | k | v, read so by the loader):
  // the stack is a view of them, no second copy of the weights.
  bool adjacent = parts[0]->is_contiguous();
  for (size_t i = 1; i < parts.size() && adjacent; ++i) {
    const Tensor& a = *parts[i - 1];
    const Tensor& b = *parts[i];
    adjacent = b.is_contiguous() && b.dtype() == a.dtype() && b.buffer() == a.buffer() &&
               b.byte_offset() == a.byte_offset() + a.nbytes() && b.shape().size() == a.shape().size() &&
               std::equal(b.shape().begin() + 1, b.shape().end(), a.shape().begin() + 1);
  }
  if (adjacent)
    return Tensor::from_buffer(parts[0]->buffer(), parts[0]->byte_offset(), shape, parts[0]->dtype());
  Tensor out = Tensor::empty(shape, parts[0]->dtype(), parts[0]->device());
  if (dtype_is_block(out.dtype())) {  // whole rows of blocks (a GGUF's quantized q | k | v), on the CPU
    auto* dst = static_cast<uint8_t*>(out.raw());
    for (const Tensor* p : parts) {
      MAMBA_CHECK(p->is_contiguous() && p->device() == Device::cpu && p->dtype() == out.dtype());
      std::memcpy(dst, p->raw(), p->nbytes());
      dst += p->nbytes();
    }
    return out;
  }
  int64_t at = 0;
  for (const Tensor* p : parts) {
    out.slice(0, at, at + p->size(0)).copy_from(*p);
    at += p->size(0);
  }
  return out;
}

// Adds rows [at, at + dst.size(0)) of src into dst (a fused weight's gradient back to its parts).
void add_rows(ops::Exec& exec, Tensor& dst, const Tensor& src, int64_t at) {
  const Tensor part = src.slice(0, at, at + dst.size(0)).contiguous();
  ops::add_(exec, dst, part);
}

namespace {

class AttentionHf final : public Mixer {
public:
  explicit AttentionHf(const AttentionSpec& s) : s_(s) {
    q_dim_ = s.n_heads * s.head_dim;
    kv_dim_ = s.n_kv_heads * s.head_dim;
    if (s_.softmax_scale == 0.0) s_.softmax_scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  }

  MixerKind kind() const override { return MixerKind::attention; }
  std::string label() const override { return s_.rotary_dim > 0 ? "Attn(RoPE)" : "Attn(NoPE)"; }

  void visit_params(const ParamVisitor& fn) override {
    const std::string& p = s_.prefix;
    fn({p + "q_proj.weight", &wq, {q_dim_, s_.d_in}});
    fn({p + "k_proj.weight", &wk, {kv_dim_, s_.d_in}});
    fn({p + "v_proj.weight", &wv, {kv_dim_, s_.d_in}});
    if (s_.qkv_bias) {
      fn({p + "q_proj.bias", &bq, {q_dim_}, true, Init::zeros()});
      fn({p + "k_proj.bias", &bk, {kv_dim_}, true, Init::zeros()});
      fn({p + "v_proj.bias", &bv, {kv_dim_}, true, Init::zeros()});
    }
    fn({p + "o_proj.weight", &wo, {s_.d_out, q_dim_}});
    if (s_.o_bias) fn({p + "o_proj.bias", &bo, {s_.d_out}, true, Init::zeros()});
    if (s_.adapter_rank > 0) {
      const int64_t r = s_.adapter_rank;
      const std::string* names[3] = {&s_.adapter_q, &s_.adapter_k, &s_.adapter_v};
      const int64_t outs[3] = {q_dim_, kv_dim_, kv_dim_};
      for (int i = 0; i < 3; ++i) {
        fn({p + *names[i] + ".0.weight", &adapter_a[i], {r, s_.d_in}});
        fn({p + *names[i] + ".1.weight", &adapter_b[i], {outs[i], r}});
      }
    }
  }

  void prepare(ops::Exec& exec) override {
    assign_derived(w_qkv, stack_rows({&wq, &wk, &wv}));
    if (s_.qkv_bias) assign_derived(b_qkv, stack_rows({&bq, &bk, &bv}));
  }

  LayerState new_state(int64_t batch) const override {
    LayerState st;
    st.k_cache = Tensor::zeros({batch, 0, s_.n_kv_heads, s_.head_dim});
    st.v_cache = Tensor::zeros({batch, 0, s_.n_kv_heads, s_.head_dim});
    return st;
  }

  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t pos) const override {
    return run(exec, u, st, pos, nullptr);
  }

  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    LayerState st = state_on(new_state(u.size(0)), u.device());
    return run(exec, u, st, 0, &saved_as<Saved>(saved));
  }

  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    AttentionHf& g = static_cast<AttentionHf&>(grads);
    const int64_t batch = s.u.size(0), seq_len = s.u.size(1), hd = s_.head_dim;
    const Tensor dctx = ops::linear_bwd(exec, dout, s.context, wo, g.wo, g.bo);
    Tensor dq, dk, dv;
    ops::attention_bwd(exec, dctx.view({batch, seq_len, s_.n_heads, hd}), s.q, s.k, s.v,
                       static_cast<float>(s_.softmax_scale), dq, dk, dv);
    const float base = static_cast<float>(s_.rope_theta);
    if (s_.rotary_dim > 0) {
      ops::rotary_bwd(exec, dq, s_.rotary_dim, 0, base, false);
      ops::rotary_bwd(exec, dk, s_.rotary_dim, 0, base, false);
    }
    const Tensor dqkv = ops::concat_last(
        exec, ops::concat_last(exec, dq.view({batch, seq_len, q_dim_}), dk.view({batch, seq_len, kv_dim_})),
        dv.view({batch, seq_len, kv_dim_}));
    Tensor dw = Tensor::zeros(w_qkv.shape(), DType::f32, dout.device());
    Tensor db = s_.qkv_bias ? Tensor::zeros(b_qkv.shape(), DType::f32, dout.device()) : Tensor();
    Tensor du = ops::linear_bwd(exec, dqkv, s.u, w_qkv, dw, db);
    add_rows(exec, g.wq, dw, 0);
    add_rows(exec, g.wk, dw, q_dim_);
    add_rows(exec, g.wv, dw, q_dim_ + kv_dim_);
    if (s_.qkv_bias) {
      add_rows(exec, g.bq, db, 0);
      add_rows(exec, g.bk, db, q_dim_);
      add_rows(exec, g.bv, db, q_dim_ + kv_dim_);
    }
    if (s_.adapter_rank > 0) {  // q/k/v += B·(A·u)
      const int64_t offs[3] = {0, q_dim_, q_dim_ + kv_dim_}, outs[3] = {q_dim_, kv_dim_, kv_dim_};
      Tensor none;
      for (int i = 0; i < 3; ++i) {
        const Tensor d_out = columns(dqkv, offs[i], outs[i]).contiguous();
        const Tensor dmid = ops::linear_bwd(exec, d_out, s.mid[i], adapter_b[i], g.adapter_b[i], none);
        ops::add_(exec, du, ops::linear_bwd(exec, dmid, s.u, adapter_a[i], g.adapter_a[i], none));
      }
    }
    return du;
  }

  int64_t state_bytes_fixed() const override { return 0; }
  int64_t state_bytes_per_token() const override { return 4 * 2 * kv_dim_; }

private:
  struct Saved final : MixerSaved {
    Tensor u, q, k, v, context;
    Tensor mid[3];  // adapters' A·u
  };

  Tensor run(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t pos, Saved* saved) const {
    const int64_t batch = u.size(0), seq_len = u.size(1), hd = s_.head_dim;
    Tensor qkv = ops::linear(exec, u, w_qkv, b_qkv);  // [batch, seq_len, q + 2·kv]
    if (s_.adapter_rank > 0) {
      const int64_t offs[3] = {0, q_dim_, q_dim_ + kv_dim_}, outs[3] = {q_dim_, kv_dim_, kv_dim_};
      for (int i = 0; i < 3; ++i) {
        const Tensor mid = ops::linear(exec, u, adapter_a[i]);
        Tensor part = columns(qkv, offs[i], outs[i]).contiguous();
        ops::add_(exec, part, ops::linear(exec, mid, adapter_b[i]));
        columns(qkv, offs[i], outs[i]).copy_from(part);
        if (saved) saved->mid[i] = mid;
      }
    }
    Tensor q = columns(qkv, 0, q_dim_).contiguous().view({batch, seq_len, s_.n_heads, hd});
    Tensor k = columns(qkv, q_dim_, kv_dim_).contiguous().view({batch, seq_len, s_.n_kv_heads, hd});
    Tensor v = columns(qkv, q_dim_ + kv_dim_, kv_dim_).contiguous().view({batch, seq_len, s_.n_kv_heads, hd});
    if (s_.rotary_dim > 0) {
      const float base = static_cast<float>(s_.rope_theta);
      ops::rotary_apply(exec, q, s_.rotary_dim, pos, base, false);
      ops::rotary_apply(exec, k, s_.rotary_dim, pos, base, false);
    }
    append_kv(st, k, v, pos);
    const Tensor attn =
        ops::attention_fwd(exec, q, st.k_cache, st.v_cache, pos, static_cast<float>(s_.softmax_scale));
    const Tensor context = attn.view({batch, seq_len, q_dim_});
    if (saved) {
      saved->u = u;
      saved->q = q;
      saved->k = k;
      saved->v = v;
      saved->context = context;
    }
    return ops::linear(exec, context, wo, bo);
  }

  AttentionSpec s_;
  int64_t q_dim_ = 0, kv_dim_ = 0;
  Tensor wq, wk, wv, bq, bk, bv, wo, bo, adapter_a[3], adapter_b[3];
  Tensor w_qkv, b_qkv;  // derived: [q; k; v] rows
};

}  // namespace

std::unique_ptr<Mixer> make_attention_hf(const AttentionSpec& s) {
  return std::make_unique<AttentionHf>(s);
}

}  // namespace mamba::models
