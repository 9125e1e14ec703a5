// Falcon-H1 (TII, model_type "falcon_h1"): every layer runs Mamba-2 and RoPE GQA attention in
// parallel on input_layernorm(x) and adds both outputs, then a SwiGLU MLP after pre_ff_layernorm.
// Llama-style names ("model.layers.i.{mamba, self_attn, feed_forward}.").
//
// The µP multipliers are all scales of rows of some projection (and of its bias), so they are
// folded into weights, exactly:
//   mamba(x·in)·out           -> in_proj.weight ·in, out_proj.{weight,bias} ·out
//   in_proj(x) ⊙ mup          -> rows of in_proj.{weight,bias} per segment z | x | B | C | dt
//   attn(x·in)·out, k·key_mul -> q/k/v_proj.weight ·in, k_proj.{weight,bias} ·key_mul, o_proj ·out
//   act(gate·g), down·d       -> gate_proj.{weight,bias} ·g, down_proj.{weight,bias} ·d
// A `Scaled` wrapper holds the checkpoint parameters and hands its inner (shared) mixer scaled
// copies at prepare(); backward scales the inner mixer's gradients back (d/dW = s·d/d(sW)).
#include <algorithm>
#include <map>

#include "core/checked.h"
#include "core/error.h"
#include "models/architectures.h"
#include "models/families/family.h"

namespace mamba::models {
namespace {

// Rows [begin, end) of a parameter (its first dim) times `factor`.
struct RowScale {
  int64_t begin, end;
  double factor;
};
using Scales = std::map<std::string, std::vector<RowScale>>;  // by the inner mixer's param name

// `real` scaled row-segment-wise into a new tensor of real's dtype and device (f32 arithmetic).
Tensor scaled_copy(ops::Exec& exec, const Tensor& real, const std::vector<RowScale>& scale) {
  Tensor t = real.dtype() == DType::f32 ? real.copy() : real.to(DType::f32);
  for (const RowScale& s : scale) {
    if (s.factor == 1.0 || s.end <= s.begin) continue;
    Tensor rows = t.slice(0, s.begin, s.end);
    ops::scale_(exec, rows, static_cast<float>(s.factor));
  }
  return real.dtype() == DType::f32 ? t : t.to(real.dtype());
}

// `s` without the parameters whose every factor is 1 (a GGUF holds the multipliers folded in and
// says 1 for all; those parameters may then stay quantized, used as stored).
Scales active(Scales s) {
  for (auto it = s.begin(); it != s.end();)
    it = std::all_of(it->second.begin(), it->second.end(), [](const RowScale& r) { return r.factor == 1.0; })
             ? s.erase(it)
             : std::next(it);
  return s;
}

// A mixer whose parameters are `inner`'s with some rows scaled: visit_params names the real
// (checkpoint) tensors; the inner mixer computes with the scaled copies made in prepare().
class Scaled final : public Mixer {
public:
  Scaled(std::unique_ptr<Mixer> inner, const Scales& all) : inner_(std::move(inner)) {
    const Scales scales = active(all);
    size_t matched = 0;
    inner_->visit_params([&](const ParamRef& p) {
      Slot s{p, p.tensor, Tensor(), {}};
      auto it = scales.find(p.name);
      if (it != scales.end()) {
        s.scale = it->second;
        ++matched;
      }
      slots_.push_back(std::move(s));
    });
    MAMBA_CHECK(matched == scales.size(), "a scaled parameter is not a parameter of the mixer");
  }

  MixerKind kind() const override { return inner_->kind(); }
  std::string label() const override { return inner_->label(); }
  void visit_params(const ParamVisitor& fn) override {
    for (Slot& s : slots_) {
      ParamRef real = s.ref;
      real.tensor = &s.real;
      fn(real);
    }
  }
  void prepare(ops::Exec& exec) override {
    for (Slot& s : slots_)
      *s.inner = s.scale.empty() || !s.real.defined() ? s.real : scaled_copy(exec, s.real, s.scale);
    inner_->prepare(exec);
  }
  LayerState new_state(int64_t batch) const override { return inner_->new_state(batch); }
  Tensor forward(ops::Exec& exec, const Tensor& u, LayerState& state, int64_t pos) const override {
    return inner_->forward(exec, u, state, pos);
  }
  Tensor step(ops::Exec& exec, const Tensor& u, LayerState& state, int64_t pos) const override {
    return inner_->step(exec, u, state, pos);
  }
  Tensor forward_train(ops::Exec& exec, const Tensor& u, std::unique_ptr<MixerSaved>& saved) const override {
    return inner_->forward_train(exec, u, saved);
  }
  // `grads` is a Scaled whose real tensors hold the gradients: its inner mixer accumulates into
  // them directly where unscaled, into zeroed temporaries scaled and added afterwards elsewhere.
  Tensor backward(ops::Exec& exec, const Tensor& dout, const MixerSaved& saved, Mixer& grads) const override {
    Scaled& g = static_cast<Scaled&>(grads);
    std::vector<Tensor> tmp(g.slots_.size());
    for (size_t i = 0; i < g.slots_.size(); ++i) {
      Slot& s = g.slots_[i];
      if (s.scale.empty()) {
        *s.inner = s.real;
      } else {
        tmp[i] = Tensor::zeros(s.real.shape(), DType::f32, s.real.device());
        *s.inner = tmp[i];
      }
    }
    Tensor du = inner_->backward(exec, dout, saved, *g.inner_);
    for (size_t i = 0; i < g.slots_.size(); ++i) {
      Slot& s = g.slots_[i];
      if (s.scale.empty()) continue;
      for (const RowScale& r : s.scale) {
        if (r.factor == 1.0 || r.end <= r.begin) continue;
        Tensor rows = tmp[i].slice(0, r.begin, r.end);
        ops::scale_(exec, rows, static_cast<float>(r.factor));
      }
      ops::add_(exec, s.real, tmp[i]);
      *s.inner = Tensor();
    }
    return du;
  }
  int64_t state_bytes_fixed() const override { return inner_->state_bytes_fixed(); }
  int64_t state_bytes_per_token() const override { return inner_->state_bytes_per_token(); }

private:
  struct Slot {
    ParamRef ref;   // the inner mixer's name and shape
    Tensor* inner;  // the inner mixer's tensor (the scaled copy, or `real` itself)
    Tensor real;    // the checkpoint parameter
    std::vector<RowScale> scale;
  };
  std::unique_ptr<Mixer> inner_;
  std::vector<Slot> slots_;
};

// The multipliers and dimensions read from config.json.
struct FalconSpec {
  Mamba2Spec mamba;
  AttentionSpec attn;
  MlpSpec mlp;
  double ssm_in = 1, ssm_out = 1, attn_in = 1, attn_out = 1, key_mul = 1, gate_mul = 1, down_mul = 1;
  std::vector<double> ssm_mul;  // z, x, B, C, dt
};

std::vector<double> multipliers(const io::Reader& r, const char* key, size_t n) {
  std::vector<double> v = io::number_list(r, key, std::vector<double>(n, 1.0));
  if (v.size() != n) throw_error(ErrorCode::shape, r.where(key), " has ", v.size(), " entries, expected ", n);
  return v;
}

FalconSpec read_spec(const io::Reader& r, const ModelConfig& c) {
  FalconSpec f;
  const std::string act = r.string("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    throw_error(ErrorCode::unsupported, r.where("hidden_act"), " expected silu, found '", act, "'");

  // Mamba-2. The reference's defaults: mamba_d_ssm 1024 when absent, mamba_expand·hidden when null.
  Mamba2Spec& m = f.mamba;
  m.d_model = c.d_model;
  m.n_heads = r.integer("mamba_n_heads", 128);
  if (m.n_heads <= 0)
    throw_error(ErrorCode::parse, r.where("mamba_n_heads"), " expected a positive integer, found ",
                m.n_heads);
  const int64_t d_ssm =
      !r.j.contains("mamba_d_ssm") ? 1024
      : r.has("mamba_d_ssm")
          ? r.integer("mamba_d_ssm", 0)
          : checked_to_int64(r.number("mamba_expand", 2) * static_cast<double>(c.d_model), 0,
                             int64_t{1} << 22, r.where("mamba_expand") + " * hidden_size");
  if (d_ssm <= 0 || d_ssm % m.n_heads != 0)
    throw_error(ErrorCode::shape, r.where("mamba_d_ssm"), " (", d_ssm,
                ") must be a positive multiple of mamba_n_heads ", m.n_heads);
  const bool auto_head = !r.has("mamba_d_head") || r.j.at("mamba_d_head").is_string();
  if (auto_head && r.has("mamba_d_head") && r.j.at("mamba_d_head").get<std::string>() != "auto")
    r.type_error("mamba_d_head", "an integer or \"auto\"", r.j.at("mamba_d_head"));
  m.head_dim = auto_head ? d_ssm / m.n_heads : r.integer("mamba_d_head", 0);
  if (m.head_dim * m.n_heads != d_ssm)
    throw_error(ErrorCode::shape, r.where("mamba_d_head"), " inconsistent dimensions: mamba_n_heads ",
                m.n_heads, " x mamba_d_head ", m.head_dim, " != mamba_d_ssm ", d_ssm);
  m.n_groups = r.integer("mamba_n_groups", 1);
  if (m.n_groups <= 0 || m.n_heads % m.n_groups != 0)
    throw_error(ErrorCode::shape, r.where("mamba_n_groups"), " (", m.n_groups,
                ") must be positive and divide mamba_n_heads ", m.n_heads);
  m.d_state = r.integer("mamba_d_state", 256);
  m.d_conv = r.integer("mamba_d_conv", 4);
  m.chunk_size = r.integer("mamba_chunk_size", 256);
  m.conv_bias = r.boolean("mamba_conv_bias", true);
  m.proj_bias = r.boolean("mamba_proj_bias", false);
  if (r.boolean("projectors_bias", false) != m.proj_bias)
    throw_error(ErrorCode::unsupported, r.where("projectors_bias"),
                " must equal mamba_proj_bias (one bias flag for in_proj and out_proj)");
  m.rmsnorm = r.boolean("mamba_rms_norm", false);
  m.norm_before_gate = r.boolean("mamba_norm_before_gate", true);
  m.norm_eps = c.norm_eps;
  read_time_step_limit(r, m);

  // Attention: RoPE over the whole head (the reference ignores partial_rotary_factor).
  AttentionSpec& a = f.attn;
  a.d_in = a.d_out = c.d_model;
  a.n_heads = r.integer("num_attention_heads", 32);
  a.n_kv_heads = !r.j.contains("num_key_value_heads") ? 8 : r.integer("num_key_value_heads", a.n_heads);
  if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0)
    throw_error(ErrorCode::shape, r.where("num_key_value_heads"), " (", a.n_kv_heads,
                ") must be positive and divide num_attention_heads ", a.n_heads);
  a.head_dim = r.integer("head_dim", c.d_model / a.n_heads);
  if (a.head_dim <= 0 || a.head_dim % 2 != 0)
    throw_error(ErrorCode::shape, r.where("head_dim"), " expected a positive even integer, found ",
                a.head_dim);
  a.qkv_bias = a.o_bias = r.boolean("attention_bias", false);
  read_rope(r, a);
  a.rotary_dim = a.head_dim;

  MlpSpec& p = f.mlp;
  p.d_model = c.d_model;
  p.hidden = r.integer("intermediate_size", 14336);
  if (p.hidden <= 0)
    throw_error(ErrorCode::parse, r.where("intermediate_size"), " expected a positive integer, found ",
                p.hidden);
  p.bias = r.boolean("mlp_bias", false);
  p.gate = "feed_forward.gate_proj.weight";
  p.up = "feed_forward.up_proj.weight";
  p.down = "feed_forward.down_proj.weight";

  f.ssm_in = r.number("ssm_in_multiplier", 1.0);
  f.ssm_out = r.number("ssm_out_multiplier", 1.0);
  f.attn_in = r.number("attention_in_multiplier", 1.0);
  f.attn_out = r.number("attention_out_multiplier", 1.0);
  f.key_mul = r.number("key_multiplier", 1.0);
  const std::vector<double> mlp_mul = multipliers(r, "mlp_multipliers", 2);
  f.gate_mul = mlp_mul[0];
  f.down_mul = mlp_mul[1];
  f.ssm_mul = multipliers(r, "ssm_multipliers", 5);
  return f;
}

void configure(ModelConfig& c, const std::string& source) {
  const io::Reader r{c.family_json, source, ""};
  configure_common(r, c, "rms_norm_eps");
  c.tie_embeddings = r.boolean("tie_word_embeddings", false);
  c.embed_scale = r.number("embedding_multiplier", 1.0);
  c.logits_scale = r.number("lm_head_multiplier", 1.0);
  read_spec(r, c);  // validates
  for (int64_t i = 0; i < c.n_layer; ++i) {
    c.attn_layer_idx.push_back(i);  // every layer keeps a KV cache
    c.layer_names.push_back("Mamba2+Attn");
  }
}

void build_block(const ModelConfig& c, int64_t, Block& b, BuildContext&) {
  const io::Reader r{c.family_json, "config.json", ""};
  const FalconSpec f = read_spec(r, c);
  b.norm_name = "input_layernorm";
  b.norm2_name = "pre_ff_layernorm";

  // Mamba-2: in_proj rows [z | x | B | C | dt] times the µP vector (and ssm_in on the weight).
  const int64_t ds = f.mamba.n_heads * f.mamba.head_dim, gn = f.mamba.n_groups * f.mamba.d_state;
  const int64_t bounds[6] = {0, ds, 2 * ds, 2 * ds + gn, 2 * ds + 2 * gn, 2 * ds + 2 * gn + f.mamba.n_heads};
  std::vector<RowScale> in_w, in_b;
  for (int k = 0; k < 5; ++k) {
    in_w.push_back({bounds[k], bounds[k + 1], f.ssm_mul[k] * f.ssm_in});
    in_b.push_back({bounds[k], bounds[k + 1], f.ssm_mul[k]});
  }
  const int64_t D = c.d_model;
  Scales ms{{"mixer.in_proj.weight", in_w}, {"mixer.out_proj.weight", {{0, D, f.ssm_out}}}};
  if (f.mamba.proj_bias) {
    ms["mixer.in_proj.bias"] = in_b;
    ms["mixer.out_proj.bias"] = {{0, D, f.ssm_out}};
  }
  b.mixer = std::make_unique<Scaled>(make_hf_mamba2(f.mamba, r.source), ms);
  b.mixer_prefix = "mamba.";

  // Attention beside it, on the same normed input.
  const int64_t q = f.attn.n_heads * f.attn.head_dim, kv = f.attn.n_kv_heads * f.attn.head_dim;
  const std::string& ap = f.attn.prefix;
  Scales as{{ap + "q_proj.weight", {{0, q, f.attn_in}}},
            {ap + "k_proj.weight", {{0, kv, f.attn_in * f.key_mul}}},
            {ap + "v_proj.weight", {{0, kv, f.attn_in}}},
            {ap + "o_proj.weight", {{0, D, f.attn_out}}}};
  if (f.attn.qkv_bias) as[ap + "k_proj.bias"] = {{0, kv, f.key_mul}};
  if (f.attn.o_bias) as[ap + "o_proj.bias"] = {{0, D, f.attn_out}};
  b.mixer_par = std::make_unique<Scaled>(make_attention_hf(f.attn), as);

  // SwiGLU MLP: act(gate·gate_mul)·up, then down·down_mul.
  const int64_t I = f.mlp.hidden;
  Scales fs{{f.mlp.gate, {{0, I, f.gate_mul}}}, {f.mlp.down, {{0, D, f.down_mul}}}};
  if (f.mlp.bias) {
    fs["feed_forward.gate_proj.bias"] = {{0, I, f.gate_mul}};
    fs["feed_forward.down_proj.bias"] = {{0, D, f.down_mul}};
  }
  b.ffn = std::make_unique<Scaled>(make_mlp(f.mlp), fs);
}

}  // namespace

extern const Family kFalconH1{"falcon_h1", configure, build_block};

}  // namespace mamba::models
