// Multi-head attention mixer of hybrid models (SPEC.md §4.5): in_proj -> [q | k | v | mlp up |
// mlp gate] -> optional causal conv (bias, no activation) over qkv -> rotary -> causal GQA
// attention over a growing KV cache -> concat with the MLP part -> out_proj. Decode attends all
// cached keys and its conv state holds pre-conv inputs (intended semantics, SPEC §8.14).
#include "ops/attention/attention.h"

#include <algorithm>

#include "models/architectures.h"
#include "models/attention.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"

namespace mamba::models {
namespace {

class Attention final : public Mixer {
public:
  Attention(const ModelConfig& config, int64_t)
      : c_(config.section<AttentionConfig>()), d_model_(config.d_model) {}

  MixerKind kind() const override { return MixerKind::attention; }

  void visit_params(const ParamVisitor& fn) override {
    const int64_t in_out = c_.qkv_dim + c_.mlp_dim;
    fn({"mixer.in_proj.weight", &in_proj_weight, {in_out, d_model_}});
    if (c_.qkv_proj_bias) fn({"mixer.in_proj.bias", &in_proj_bias, {in_out}, true, Init::zeros()});
    if (c_.d_conv > 0) {
      fn({"mixer.conv1d.weight",
          &conv1d_weight,
          {c_.qkv_dim, 1, c_.d_conv},
          false,
          conv_weight_init(c_.d_conv)});
      fn({"mixer.conv1d.bias", &conv1d_bias, {c_.qkv_dim}, true, conv_bias_init()});
    }
    fn({"mixer.out_proj.weight",
        &out_proj_weight,
        {d_model_, c_.out_dim + c_.mlp_dim / 2},
        false,
        Init::residual_out()});
    if (c_.out_proj_bias) fn({"mixer.out_proj.bias", &out_proj_bias, {d_model_}, true, Init::zeros()});
  }

  void prepare(ops::Exec& exec) override {
    if (c_.d_conv > 0) conv_w = conv1d_weight.view({c_.qkv_dim, c_.d_conv});
  }

  LayerState new_state(int64_t batch) const override {
    LayerState s;
    if (c_.d_conv > 0) s.conv = Tensor::zeros({batch, c_.qkv_dim, c_.d_conv - 1});
    s.k_cache = Tensor::zeros({batch, 0, c_.num_heads_kv, c_.head_dim});
    s.v_cache = Tensor::zeros({batch, 0, c_.num_heads_kv, c_.head_dim});
    return s;
  }

  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t pos) const override {
    return run(exec, u, st, pos, nullptr);
  }

  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    LayerState st = state_on(new_state(u.size(0)), u.device());
    return run(exec, u, st, 0, &saved_as<Saved>(saved));
  }

  // out_proj -> MLP part / attention -> rotary -> conv -> in_proj, in reverse.
  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    const Saved& s = static_cast<const Saved&>(saved);
    Attention& g = static_cast<Attention&>(grads);
    const int64_t batch = s.u.size(0), seq_len = s.u.size(1), hd = c_.head_dim, nh = c_.num_heads;
    const int64_t nkv = c_.num_heads_kv, qkv = c_.qkv_dim;
    const Tensor dctx =
        ops::linear_bwd(exec, dout, s.context, out_proj_weight, g.out_proj_weight, g.out_proj_bias);
    Tensor dproj =
        Tensor::zeros(s.proj.shape(), DType::f32, dout.device());  // [batch, seq_len, qkv_dim + mlp_dim]
    if (c_.mlp_dim > 0)
      columns(dproj, qkv, c_.mlp_dim)
          .copy_from(ops::swiglu_bwd(exec, columns(dctx, nh * hd, c_.mlp_dim / 2),
                                     columns(s.proj, qkv, c_.mlp_dim), false));
    Tensor dq, dk, dv;
    ops::attention_bwd(exec, columns(dctx, 0, nh * hd).contiguous().view({batch, seq_len, nh, hd}), s.q, s.k,
                       s.v, static_cast<float>(c_.softmax_scale), dq, dk, dv);
    const float base = static_cast<float>(c_.rotary_emb_base);
    ops::rotary_bwd(exec, dq, c_.rotary_emb_dim, 0, base, c_.rotary_emb_interleaved);
    ops::rotary_bwd(exec, dk, c_.rotary_emb_dim, 0, base, c_.rotary_emb_interleaved);
    Tensor dqkv = ops::concat_last(
        exec, ops::concat_last(exec, dq.view({batch, seq_len, nh * hd}), dk.view({batch, seq_len, nkv * hd})),
        dv.view({batch, seq_len, nkv * hd}));
    if (c_.d_conv > 0) {
      Tensor dconv_w = g.conv1d_weight.view({qkv, c_.d_conv});
      dqkv = ops::causal_conv1d_bwd(exec, dqkv, columns(s.proj, 0, qkv), conv_w, conv1d_bias, /*silu=*/false,
                                    dconv_w, g.conv1d_bias);
    }
    columns(dproj, 0, qkv).copy_from(dqkv);
    return ops::linear_bwd(exec, dproj, s.u, in_proj_weight, g.in_proj_weight, g.in_proj_bias);
  }

  int64_t state_bytes_fixed() const override { return 4 * c_.qkv_dim * std::max<int64_t>(c_.d_conv - 1, 0); }
  int64_t state_bytes_per_token() const override { return 4 * 2 * c_.num_heads_kv * c_.head_dim; }

private:
  // What forward_train keeps for backward.
  struct Saved final : MixerSaved {
    Tensor u;        // [batch, seq_len, d_model]
    Tensor proj;     // [batch, seq_len, qkv_dim + mlp_dim]  in_proj output
    Tensor q;        // [batch, seq_len, num_heads, head_dim]     after rotary
    Tensor k, v;     // [batch, seq_len, num_heads_kv, head_dim]  after rotary (k)
    Tensor context;  // [batch, seq_len, out_dim + mlp_dim / 2]  out_proj input
  };

  // The forward pass (SPEC §4.5) at position `pos`; keeps its activations in `saved` when given.
  Tensor run(ops::Exec& exec, const Tensor& u, LayerState& st, int64_t pos, Saved* saved) const {
    const int64_t batch = u.size(0), seq_len = u.size(1), hd = c_.head_dim, nh = c_.num_heads,
                  nkv = c_.num_heads_kv;
    Tensor proj = ops::linear(exec, u, in_proj_weight, in_proj_bias);  // [batch, seq_len, qkv_dim + mlp_dim]
    Tensor qkv = columns(proj, 0, c_.qkv_dim);
    if (c_.d_conv > 0) qkv = ops::causal_conv1d_fwd(exec, qkv, conv_w, conv1d_bias, st.conv, /*silu=*/false);
    Tensor q = columns(qkv, 0, nh * hd).contiguous().view({batch, seq_len, nh, hd});
    Tensor k = columns(qkv, nh * hd, nkv * hd).contiguous().view({batch, seq_len, nkv, hd});
    Tensor v = columns(qkv, (nh + nkv) * hd, nkv * hd).contiguous().view({batch, seq_len, nkv, hd});
    const float base = static_cast<float>(c_.rotary_emb_base);
    ops::rotary_apply(exec, q, c_.rotary_emb_dim, pos, base, c_.rotary_emb_interleaved);
    ops::rotary_apply(exec, k, c_.rotary_emb_dim, pos, base, c_.rotary_emb_interleaved);
    append_kv(st, k, v, pos);
    Tensor attn =
        ops::attention_fwd(exec, q, st.k_cache, st.v_cache, pos, static_cast<float>(c_.softmax_scale));
    Tensor context = attn.view({batch, seq_len, nh * hd});
    if (c_.mlp_dim > 0)
      context =
          ops::concat_last(exec, context, ops::swiglu(exec, columns(proj, c_.qkv_dim, c_.mlp_dim), false));
    if (saved) {
      saved->u = u;
      saved->proj = proj;
      saved->q = q;
      saved->k = k;
      saved->v = v;
      saved->context = context;
    }
    return ops::linear(exec, context, out_proj_weight, out_proj_bias);
  }

  AttentionConfig c_;
  int64_t d_model_;
  Tensor in_proj_weight, in_proj_bias, conv1d_weight, conv1d_bias, out_proj_weight, out_proj_bias;
  Tensor conv_w;  // derived: conv weight as [qkv_dim, d_conv]
};

// ---- The architecture: attn_cfg, derived dimensions, JSON, bench shapes. ----

void parse(const io::Reader& r, ModelConfig& c) {
  AttentionConfig& a = c.section<AttentionConfig>();
  a.num_heads = r.integer("num_heads", a.num_heads);
  a.num_heads_kv = r.integer("num_heads_kv", a.num_heads);
  a.head_dim = r.integer("head_dim", 0);
  a.mlp_dim = r.integer("mlp_dim", 0);
  a.qkv_proj_bias = r.boolean("qkv_proj_bias", a.qkv_proj_bias);
  a.out_proj_bias = r.boolean("out_proj_bias", a.out_proj_bias);
  a.softmax_scale = r.number("softmax_scale", 0.0);
  a.causal = r.boolean("causal", a.causal);
  a.d_conv = r.integer("d_conv", 0);
  a.rotary_emb_dim = r.integer("rotary_emb_dim", 0);
  a.rotary_emb_base = r.number("rotary_emb_base", a.rotary_emb_base);
  a.rotary_emb_interleaved = r.boolean("rotary_emb_interleaved", a.rotary_emb_interleaved);
}

void check(const ModelConfig& c, const std::string& src) {
  const AttentionConfig& a = c.section<AttentionConfig>();
  require_sizes(src, {{"attn_cfg.num_heads", a.num_heads},
                      {"attn_cfg.num_heads_kv", a.num_heads_kv},
                      {"attn_cfg.head_dim", a.head_dim},
                      {"attn_cfg.mlp_dim", a.mlp_dim},
                      {"attn_cfg.d_conv", a.d_conv},
                      {"attn_cfg.rotary_emb_dim", a.rotary_emb_dim}});
  if (a.mlp_dim < 0 || a.head_dim < 0 || a.d_conv < 0 || a.rotary_emb_dim < 0)
    throw_error(ErrorCode::parse, src, ": attn_cfg sizes must not be negative");
}

void finalize(ModelConfig& c, const std::string& src) {
  AttentionConfig& a = c.section<AttentionConfig>();
  io::require_positive(src, "attn_cfg.num_heads", a.num_heads);
  if (a.num_heads_kv <= 0) a.num_heads_kv = a.num_heads;
  if (a.num_heads % a.num_heads_kv != 0)
    io::inconsistent(src, "attn_cfg.num_heads " + std::to_string(a.num_heads) +
                              " is not divisible by num_heads_kv " + std::to_string(a.num_heads_kv));
  if (a.head_dim == 0) {
    if (c.d_model % a.num_heads != 0) io::inconsistent(src, "d_model is not divisible by attn_cfg.num_heads");
    a.head_dim = c.d_model / a.num_heads;
  }
  a.mlp_dim = (a.mlp_dim + 255) / 256 * 256;
  a.qkv_dim = a.head_dim * (a.num_heads + 2 * a.num_heads_kv);
  a.out_dim = a.head_dim * a.num_heads;
  if (a.rotary_emb_dim % 2 != 0 || a.rotary_emb_dim > a.head_dim)
    io::inconsistent(src, "attn_cfg.rotary_emb_dim must be even and <= head_dim");
  if (!a.causal)
    throw_error(ErrorCode::unsupported, src,
                ": field 'attn_cfg.causal' is false: a language model needs causal "
                "attention (set \"causal\": true)");
  if (a.softmax_scale == 0.0) a.softmax_scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
}

nlohmann::json to_json(const ModelConfig& c) {
  const AttentionConfig& a = c.section<AttentionConfig>();
  return {{"num_heads", a.num_heads},
          {"num_heads_kv", a.num_heads_kv},
          {"head_dim", a.head_dim},
          {"mlp_dim", a.mlp_dim},
          {"qkv_proj_bias", a.qkv_proj_bias},
          {"out_proj_bias", a.out_proj_bias},
          {"causal", a.causal},
          {"d_conv", a.d_conv},
          {"rotary_emb_dim", a.rotary_emb_dim},
          {"rotary_emb_base", a.rotary_emb_base},
          {"rotary_emb_interleaved", a.rotary_emb_interleaved}};
}

// "hybrid": the Mamba-2 bench model with attention every 6th layer, GQA 12/4 heads, rotary on 64
// dims, no MLP.
void bench_shapes(const std::string&, ModelConfig& c) {
  arch_spec(MixerKind::mamba2).bench_shapes("mamba2", c);
  for (int64_t i = 5; i < c.n_layer; i += 6) c.attn_layer_idx.push_back(i);
  AttentionConfig& a = c.section<AttentionConfig>();
  a.num_heads = std::max<int64_t>(1, c.d_model / 64);  // heads of 64 (12/4 at d_model 768)
  a.num_heads_kv = std::max<int64_t>(1, a.num_heads / 3);
  a.rotary_emb_dim = std::min<int64_t>(64, c.d_model / a.num_heads / 2 * 2);
  a.causal = true;
  c.d_intermediate = 0;
}

std::unique_ptr<Mixer> make(const ModelConfig& config, int64_t layer) {
  return std::make_unique<Attention>(config, layer);
}

}  // namespace

extern const ArchSpec attention_arch = {.kind = MixerKind::attention,
                                        .name = "MHA",
                                        .section = "attn_cfg",
                                        .parse = parse,
                                        .check = check,
                                        .finalize = finalize,
                                        .to_json = to_json,
                                        .make_mixer = make,
                                        .bench_names = {"hybrid"},
                                        .bench_shapes = bench_shapes};

}  // namespace mamba::models
