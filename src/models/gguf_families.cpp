// The hybrid families as llama.cpp names them in GGUF (docs/quantization.md, "Hybrid families"):
//   granitehybrid   <- granitemoehybrid (Granite-4.0-H) and bamba (read back as granitemoehybrid)
//   jamba           <- jamba
//   falcon-h1       <- falcon_h1 (µP multipliers folded into the weights, as its converter does)
//   nemotron_h[_moe] <- nemotron_h (_moe when any layer is a MoE)
// Names, shapes and transforms follow llama.cpp's convert_hf_to_gguf.py (conversion/granite.py,
// jamba.py, falcon_h1.py, nemotron.py, mamba.py) and what its loader reads (src/models/*.cpp);
// layer kinds come back from the per-layer head_count_kv / feed_forward_length arrays and the
// tensors present, as llama.cpp decides them.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "io/config_reader.h"
#include "models/gguf_map.h"
#include "models/mamba1.h"

namespace mamba::models::gguf_map {
namespace {

using io::GgufValue;

io::Reader reader(const ModelConfig& c) {
  return io::Reader{c.family_json, "config.json", ""};
}

// Layer kinds in one spelling: mamba, attention, mlp, moe (Nemotron-H's list or pattern).
std::vector<std::string> nemotron_kinds(const io::Reader& r) {
  std::vector<std::string> kinds;
  if (r.has("layers_block_type")) {
    for (std::string k : io::string_list(r, "layers_block_type"))
      kinds.push_back(k == "linear_attention" ? "mamba" : k == "full_attention" ? "attention" : k);
    return kinds;
  }
  for (char ch : r.string("hybrid_override_pattern", ""))
    kinds.push_back(ch == 'M' ? "mamba" : ch == '*' ? "attention" : ch == '-' ? "mlp" : "moe");
  return kinds;
}

// Granite's layer_types: attention or mamba per layer.
bool granite_attention(const ModelConfig& c, int64_t layer) {
  return std::find(c.attn_layer_idx.begin(), c.attn_layer_idx.end(), layer) != c.attn_layer_idx.end();
}

int64_t jamba_period_match(const io::Reader& r, const char* period, const char* offset, int64_t p_def,
                           int64_t o_def, int64_t layer) {
  return layer % r.integer(period, p_def) == r.integer(offset, o_def);
}
bool jamba_expert(const io::Reader& r, int64_t layer) {
  return r.integer("num_experts", 16) > 1 &&
         jamba_period_match(r, "expert_layer_period", "expert_layer_offset", 2, 1, layer);
}

struct Heads {
  int64_t q = 0, kv = 0, head_dim = 0;
};
Heads attention_heads(const ModelConfig& c) {
  const io::Reader r = reader(c);
  Heads h;
  h.q = r.integer("num_attention_heads", 0);
  h.kv = r.integer("num_key_value_heads", h.q);
  h.head_dim = h.q > 0 ? c.d_model / h.q : 0;
  if (c.family == "bamba" || c.family == "falcon_h1" || c.family == "nemotron_h")
    h.head_dim = r.integer("head_dim", h.head_dim);
  return h;
}

// The Mamba-2 mixer's sizes of a family (all but Jamba).
struct Ssm2 {
  int64_t heads = 0, inner = 0, groups = 1, state = 0, conv = 4, chunk = 256;
};
Ssm2 ssm2(const ModelConfig& c) {
  const io::Reader r = reader(c);
  Ssm2 s;
  if (c.family == "nemotron_h") {
    s.heads = r.integer("mamba_num_heads", 128);
    s.inner = s.heads * r.integer("mamba_head_dim", 64);
    s.groups = r.integer("n_groups", 8);
    s.state = r.integer("ssm_state_size", 128);
    s.conv = r.integer("conv_kernel", 4);
    s.chunk = r.integer("chunk_size", 128);
    return s;
  }
  s.heads = r.integer("mamba_n_heads", 128);
  if (c.family == "falcon_h1")
    s.inner = r.has("mamba_d_ssm") ? r.integer("mamba_d_ssm", 0)
                                   : static_cast<int64_t>(r.number("mamba_expand", 2) * double(c.d_model));
  else
    s.inner = static_cast<int64_t>(r.number("mamba_expand", 2) * static_cast<double>(c.d_model));
  s.groups = r.integer("mamba_n_groups", 1);
  s.state = r.integer("mamba_d_state", 256);
  s.conv = r.integer("mamba_d_conv", 4);
  s.chunk = r.integer("mamba_chunk_size", 256);
  return s;
}

// A Mamba-2 parameter of a hybrid (names after the mixer prefix) -> llama.cpp's, as the pure
// mamba2 mapping does it.
std::optional<Param> mamba2_tensor(const ModelConfig& c, const std::string& blk, const std::string& rest,
                                   const Shape& shape) {
  const Ssm2 s = ssm2(c);
  Param p;
  auto one = [&](const char* name, Transform t, Shape file_shape, bool linear) {
    p.parts = {{blk + name}};
    p.transform = t;
    p.quantize = p.in_place = linear;
    p.shape = std::move(file_shape);
    return p;
  };
  if (rest == "in_proj.weight") return one("ssm_in.weight", Transform::none, shape, true);
  if (rest == "out_proj.weight") return one("ssm_out.weight", Transform::none, shape, true);
  if (rest == "conv1d.weight")
    return one("ssm_conv1d.weight", Transform::reshape, {shape[0], shape[2]}, false);
  if (rest == "conv1d.bias") return one("ssm_conv1d.bias", Transform::none, shape, false);
  if (rest == "dt_bias") return one("ssm_dt.bias", Transform::none, shape, false);
  if (rest == "A_log") return one("ssm_a", Transform::neg_exp, {shape[0], 1}, false);
  if (rest == "D") return one("ssm_d", Transform::reshape, {shape[0], 1}, false);
  if (rest == "norm.weight")
    return one("ssm_norm.weight", Transform::reshape, {s.groups, shape[0] / s.groups}, false);
  return std::nullopt;
}

// Attention projections (q / k in llama.cpp's RoPE row order where its converter permutes them).
std::optional<Param> attention_tensor(const ModelConfig& c, const std::string& blk, const std::string& rest,
                                      const Shape& shape, bool permute) {
  static const std::pair<const char*, const char*> names[] = {
      {"q_proj", "attn_q"}, {"k_proj", "attn_k"}, {"v_proj", "attn_v"}, {"o_proj", "attn_output"}};
  for (const auto& [ours, theirs] : names)
    for (const char* suffix : {".weight", ".bias"})
      if (rest == std::string(ours) + suffix) {
        Param p;
        p.parts = {{blk + theirs + suffix}};
        p.shape = shape;
        p.quantize = p.in_place = std::string(suffix) == ".weight";
        const Heads h = attention_heads(c);
        const bool q = std::string(ours) == "q_proj", k = std::string(ours) == "k_proj";
        if (permute && (q || k)) {
          p.transform = Transform::permute;
          p.heads = q ? h.q : h.kv;
        }
        return p;
      }
  return std::nullopt;
}

Param whole(const std::string& name, const Shape& shape, bool linear) {
  Param p;
  p.parts = {{name}};
  p.shape = shape;
  p.quantize = p.in_place = linear;
  return p;
}

// Our stacked-per-expert parameter `e` of `experts` -> tensor[e].
Param expert(const std::string& name, int64_t e, int64_t experts) {
  Param p;
  Part part{name};
  part.expert = e;
  part.experts = experts;
  p.parts = {part};
  p.quantize = true;
  return p;
}

// Our [.., 2n, in] gate | up parameter -> two tensors of [.., n, in].
Param halves(const std::string& gate, const std::string& up) {
  Param p;
  Part g{gate}, u{up};
  g.half = 0;
  u.half = 1;
  p.parts = {g, u};
  p.quantize = true;
  return p;
}

// "...experts.{e}.<what>" -> e and what, or -1.
int64_t expert_index(const std::string& rest, const std::string& prefix, std::string& what) {
  if (!rest.starts_with(prefix)) return -1;
  const size_t dot = rest.find('.', prefix.size());
  if (dot == std::string::npos) return -1;
  try {
    const int64_t e = std::stoll(rest.substr(prefix.size(), dot - prefix.size()));
    what = rest.substr(dot + 1);
    return e;
  } catch (...) {
    return -1;
  }
}

std::optional<Param> granite_param(const ModelConfig& c, int64_t layer, const std::string& blk,
                                   const std::string& rest, const Shape& shape) {
  const io::Reader r = reader(c);
  const bool bamba = c.family == "bamba";
  if (rest == "input_layernorm.weight") return whole(blk + "attn_norm.weight", shape, false);
  if (rest == (bamba ? "pre_ff_layernorm.weight" : "post_attention_layernorm.weight"))
    return whole(blk + "ffn_norm.weight", shape, false);
  if (rest.starts_with("mamba.")) return mamba2_tensor(c, blk, rest.substr(6), shape);
  if (rest.starts_with("self_attn.") && granite_attention(c, layer))
    return attention_tensor(c, blk, rest.substr(10), shape, true);
  if (bamba) {
    for (const char* w : {"gate", "up", "down"})
      if (rest == std::string("feed_forward.") + w + "_proj.weight")
        return whole(blk + "ffn_" + w + ".weight", shape, true);
    return std::nullopt;
  }
  const bool moe = r.integer("num_local_experts", 0) > 0;
  if (rest == "block_sparse_moe.router.layer.weight") return whole(blk + "ffn_gate_inp.weight", shape, false);
  if (rest == "block_sparse_moe.input_linear.weight")
    return halves(blk + "ffn_gate_exps.weight", blk + "ffn_up_exps.weight");
  if (rest == "block_sparse_moe.output_linear.weight") {
    Param p = whole(blk + "ffn_down_exps.weight", shape, true);
    p.in_place = false;
    return p;
  }
  if (rest == "shared_mlp.input_linear.weight")
    return moe ? halves(blk + "ffn_gate_shexp.weight", blk + "ffn_up_shexp.weight")
               : halves(blk + "ffn_gate.weight", blk + "ffn_up.weight");
  if (rest == "shared_mlp.output_linear.weight")
    return whole(blk + (moe ? "ffn_down_shexp.weight" : "ffn_down.weight"), shape, true);
  return std::nullopt;
}

std::optional<Param> jamba_param(const ModelConfig& c, int64_t layer, const std::string& blk,
                                 const std::string& rest, const Shape& shape) {
  const io::Reader r = reader(c);
  if (rest == "input_layernorm.weight") return whole(blk + "attn_norm.weight", shape, false);
  if (rest == "pre_ff_layernorm.weight") return whole(blk + "ffn_norm.weight", shape, false);
  if (rest.starts_with("self_attn.")) return attention_tensor(c, blk, rest.substr(10), shape, false);
  static const std::pair<const char*, const char*> ssm[] = {
      {"in_proj.weight", "ssm_in.weight"},
      {"x_proj.weight", "ssm_x.weight"},
      {"dt_proj.weight", "ssm_dt.weight"},
      {"out_proj.weight", "ssm_out.weight"},
      {"conv1d.bias", "ssm_conv1d.bias"},
      {"dt_proj.bias", "ssm_dt.bias"},
      {"dt_layernorm.weight", "ssm_dt_norm.weight"},
      {"b_layernorm.weight", "ssm_b_norm.weight"},
      {"c_layernorm.weight", "ssm_c_norm.weight"},
      {"D", "ssm_d"},
  };
  if (rest.starts_with("mamba.")) {
    const std::string m = rest.substr(6);
    if (m == "conv1d.weight") {
      Param p = whole(blk + "ssm_conv1d.weight", {shape[0], shape[2]}, false);
      p.transform = Transform::reshape;
      return p;
    }
    if (m == "A_log") {
      Param p = whole(blk + "ssm_a", shape, false);
      p.transform = Transform::neg_exp;
      return p;
    }
    for (const auto& [ours, theirs] : ssm)
      if (m == ours) return whole(blk + theirs, shape, m.ends_with("proj.weight"));
    return std::nullopt;
  }
  if (rest == "feed_forward.router.weight") return whole(blk + "ffn_gate_inp.weight", shape, false);
  std::string what;
  const int64_t e = expert_index(rest, "feed_forward.experts.", what);
  const int64_t E = r.integer("num_experts", 16);
  for (const char* w : {"gate", "up", "down"}) {
    const std::string proj = std::string(w) + "_proj.weight";
    if (e >= 0 && what == proj && jamba_expert(r, layer))
      return expert(blk + "ffn_" + w + "_exps.weight", e, E);
    if (rest == "feed_forward." + proj) return whole(blk + "ffn_" + w + ".weight", shape, true);
  }
  return std::nullopt;
}

// Falcon-H1's multipliers folded into rows of the weights (conversion/falcon_h1.py).
std::vector<RowScale> falcon_fold(const ModelConfig& c, const std::string& rest, const Shape& shape) {
  const io::Reader r = reader(c);
  const int64_t rows = shape.empty() ? 0 : shape[0];
  auto all = [&](double f) { return std::vector<RowScale>{{0, rows, f}}; };
  const std::vector<double> mlp = io::number_list(r, "mlp_multipliers", {1.0, 1.0});
  const double attn_in = r.number("attention_in_multiplier", 1.0);
  if (rest == "feed_forward.down_proj.weight") return all(mlp.at(1));
  if (rest == "feed_forward.gate_proj.weight") return all(mlp.at(0));
  if (rest == "self_attn.k_proj.weight") return all(r.number("key_multiplier", 1.0) * attn_in);
  if (rest == "self_attn.q_proj.weight" || rest == "self_attn.v_proj.weight") return all(attn_in);
  if (rest == "self_attn.o_proj.weight") return all(r.number("attention_out_multiplier", 1.0));
  if (rest == "mamba.out_proj.weight") return all(r.number("ssm_out_multiplier", 1.0));
  if (rest == "mamba.in_proj.weight") {
    const Ssm2 s = ssm2(c);
    const std::vector<double> m = io::number_list(r, "ssm_multipliers", {1, 1, 1, 1, 1});
    const double in = r.number("ssm_in_multiplier", 1.0);
    const int64_t gn = s.groups * s.state;
    const int64_t b[6] = {0, s.inner, 2 * s.inner, 2 * s.inner + gn, 2 * s.inner + 2 * gn, rows};
    std::vector<RowScale> out;
    for (int k = 0; k < 5; ++k) out.push_back({b[k], b[k + 1], m.at(static_cast<size_t>(k)) * in});
    return out;
  }
  return {};
}

std::optional<Param> falcon_param(const ModelConfig& c, const std::string& blk, const std::string& rest,
                                  const Shape& shape) {
  std::optional<Param> p;
  if (rest == "input_layernorm.weight") p = whole(blk + "attn_norm.weight", shape, false);
  if (rest == "pre_ff_layernorm.weight") p = whole(blk + "ffn_norm", shape, false);  // no ".weight" here
  if (rest.starts_with("mamba.")) p = mamba2_tensor(c, blk, rest.substr(6), shape);
  if (rest.starts_with("self_attn.")) p = attention_tensor(c, blk, rest.substr(10), shape, false);
  for (const char* w : {"gate", "up", "down"})
    if (rest == std::string("feed_forward.") + w + "_proj.weight")
      p = whole(blk + "ffn_" + w + ".weight", shape, true);
  if (p) p->fold = falcon_fold(c, rest, shape);
  return p;
}

std::optional<Param> nemotron_param(const ModelConfig& c, int64_t layer, const std::string& blk,
                                    const std::string& rest, const Shape& shape) {
  const io::Reader r = reader(c);
  const std::vector<std::string> kinds = nemotron_kinds(r);
  const std::string& kind = kinds.at(static_cast<size_t>(layer));
  if (rest == "norm.weight") return whole(blk + "attn_norm.weight", shape, false);
  if (!rest.starts_with("mixer.")) return std::nullopt;
  const std::string m = rest.substr(6);
  if (kind == "mamba") return mamba2_tensor(c, blk, m, shape);
  if (kind == "attention") return attention_tensor(c, blk, m, shape, true);
  if (kind == "mlp") {
    if (m == "up_proj.weight") return whole(blk + "ffn_up.weight", shape, true);
    if (m == "down_proj.weight") return whole(blk + "ffn_down.weight", shape, true);
    return std::nullopt;
  }
  if (m == "gate.weight") return whole(blk + "ffn_gate_inp.weight", shape, false);
  if (m == "gate.e_score_correction_bias") return whole(blk + "exp_probs_b.bias", shape, false);
  if (m == "shared_experts.up_proj.weight") return whole(blk + "ffn_up_shexp.weight", shape, true);
  if (m == "shared_experts.down_proj.weight") return whole(blk + "ffn_down_shexp.weight", shape, true);
  std::string what;
  const int64_t e = expert_index(m, "experts.", what);
  const int64_t E = r.integer("n_routed_experts", 0);
  if (e >= 0 && what == "up_proj.weight") return expert(blk + "ffn_up_exps.weight", e, E);
  if (e >= 0 && what == "down_proj.weight") return expert(blk + "ffn_down_exps.weight", e, E);
  return std::nullopt;
}

std::vector<GgufValue> i32s(const std::vector<int64_t>& v) {
  std::vector<GgufValue> out;
  for (int64_t x : v) out.push_back(GgufValue::of_i32(static_cast<int32_t>(x)));
  return out;
}

// A per-layer integer key: an array of n_layer, or one value for every layer, or `fallback`.
std::vector<int64_t> per_layer(const io::GgufFile& g, const std::string& key, int64_t n_layer,
                               std::optional<int64_t> fallback) {
  if (!g.has(key) && fallback) return std::vector<int64_t>(static_cast<size_t>(n_layer), *fallback);
  const GgufValue& v = g.metadata().at(key);
  if (v.type != io::GgufType::array)
    return std::vector<int64_t>(static_cast<size_t>(n_layer), g.get_int(key));
  if (static_cast<int64_t>(v.array.size()) != n_layer)
    throw_error(ErrorCode::shape, g.path(), ": metadata '", key, "' has ", v.array.size(),
                " entries, expected block_count = ", n_layer);
  std::vector<int64_t> out;
  for (const GgufValue& e : v.array) {
    const bool is_signed = e.type == io::GgufType::i8 || e.type == io::GgufType::i16 ||
                           e.type == io::GgufType::i32 || e.type == io::GgufType::i64;
    const bool is_unsigned = e.type == io::GgufType::u8 || e.type == io::GgufType::u16 ||
                             e.type == io::GgufType::u32 || e.type == io::GgufType::u64;
    if (!is_signed && !is_unsigned)
      throw_error(ErrorCode::parse, g.path(), ": metadata '", key, "' expected an integer array, found ",
                  io::gguf_type_name(e.type), " elements");
    const int64_t x = is_signed ? e.i : static_cast<int64_t>(e.u);
    if (x < 0 || x > (int64_t{1} << 24))
      throw_error(ErrorCode::parse, g.path(), ": metadata '", key, "' entry ", x, " is outside 0 .. 2^24");
    out.push_back(x);
  }
  return out;
}

// A (period, offset) with layer % period == offset exactly on the layers marked in `on` (Jamba's
// config form), or Error(unsupported). Linear: the first two marked layers fix both.
std::pair<int64_t, int64_t> period_of(const std::vector<bool>& on, const std::string& path,
                                      const char* what) {
  const int64_t n = static_cast<int64_t>(on.size());
  std::vector<int64_t> marked;
  for (int64_t i = 0; i < n && marked.size() < 2; ++i)
    if (on[static_cast<size_t>(i)]) marked.push_back(i);
  if (marked.empty()) return {n + 1, n};  // none
  const int64_t o = marked[0], p = marked.size() == 2 ? marked[1] - marked[0] : std::max(o + 1, n);
  for (int64_t i = 0; i < n; ++i)
    if (on[static_cast<size_t>(i)] != (o < p && i % p == o))
      throw_error(
          ErrorCode::unsupported, path, ": the ", what,
          " layers are not every k-th layer from an offset below k, which Jamba's config cannot express");
  return {p, o};
}

}  // namespace

bool is_family_arch(const std::string& arch) {
  return arch == "granitehybrid" || arch == "jamba" || arch == "falcon-h1" || arch == "nemotron_h" ||
         arch == "nemotron_h_moe";
}

std::string family_arch(const ModelConfig& c, const std::string& path) {
  auto refuse = [&](const std::string& what) {
    throw_error(ErrorCode::unsupported, path, ": llama.cpp's '", c.family, "' GGUF cannot hold ", what);
  };
  const io::Reader r = reader(c);
  if (c.family == "bamba" || c.family == "granitemoehybrid") {
    if (r.boolean("mamba_proj_bias", false)) refuse("Mamba-2 projection biases");
    return "granitehybrid";
  }
  if (c.family == "jamba") {
    if (r.boolean("mamba_proj_bias", false) || !r.boolean("mamba_conv_bias", true))
      refuse("Mamba projection biases or a missing conv bias");
    return "jamba";
  }
  if (c.family == "falcon_h1") {
    if (r.boolean("mamba_proj_bias", false) || r.boolean("attention_bias", false) ||
        r.boolean("mlp_bias", false))
      refuse("projection biases (the multipliers fold into weights only)");
    if (r.boolean("mamba_norm_before_gate", true)) refuse("the gated norm before the gate");
    if (c.tie_embeddings && r.number("embedding_multiplier", 1.0) != r.number("lm_head_multiplier", 1.0))
      refuse("a tied head with embedding_multiplier != lm_head_multiplier");
    return "falcon-h1";
  }
  if (c.family == "nemotron_h") {
    if (r.boolean("use_bias", false)) refuse("Mamba-2 projection biases");
    const std::vector<std::string> kinds = nemotron_kinds(r);
    return std::find(kinds.begin(), kinds.end(), "moe") != kinds.end() ? "nemotron_h_moe" : "nemotron_h";
  }
  refuse("this family (llama.cpp has no architecture for it)");
  return "";
}

void family_metadata(io::GgufWriter& w, const ModelConfig& c, const std::string& arch) {
  const io::Reader r = reader(c);
  auto u32 = [](int64_t v) { return GgufValue::of_u32(static_cast<uint32_t>(v)); };
  auto key = [&](const std::string& k) { return arch + "." + k; };
  const int64_t L = c.n_layer;
  w.set(key("context_length"), u32(r.integer("max_position_embeddings", 1 << 20)));
  w.set(key("embedding_length"), u32(c.d_model));
  w.set(key("block_count"), u32(L));
  w.set(key("vocab_size"), u32(c.vocab_padded));
  w.set(key("attention.layer_norm_rms_epsilon"), GgufValue::of_f32(static_cast<float>(c.norm_eps)));
  const Heads h = attention_heads(c);
  w.set(key("attention.head_count"), u32(h.q));
  std::vector<int64_t> kv(static_cast<size_t>(L), 0);
  for (int64_t i : c.attn_layer_idx) kv[static_cast<size_t>(i)] = h.kv;
  if (arch == "falcon-h1")
    w.set(key("attention.head_count_kv"), u32(h.kv));
  else
    w.set(key("attention.head_count_kv"), GgufValue::of_array(io::GgufType::i32, i32s(kv)));
  w.set(key("attention.key_length"), u32(h.head_dim));
  w.set(key("attention.value_length"), u32(h.head_dim));
  auto ssm2_keys = [&]() {
    const Ssm2 s = ssm2(c);
    w.set(key("ssm.conv_kernel"), u32(s.conv));
    w.set(key("ssm.state_size"), u32(s.state));
    w.set(key("ssm.group_count"), u32(s.groups));
    w.set(key("ssm.inner_size"), u32(s.inner));
    w.set(key("ssm.time_step_rank"), u32(s.heads));
    w.set("mambacpp.ssm.chunk_size", u32(s.chunk));
    if (r.has("time_step_limit")) {
      const nlohmann::json& t = r.j.at("time_step_limit");
      const double lo = r.to_number("time_step_limit", t.at(0)), hi = r.to_number("time_step_limit", t.at(1));
      if (lo != 0.0 || !std::isinf(hi)) {
        w.set("mambacpp.ssm.dt_limit_lo", GgufValue::of_f32(static_cast<float>(lo)));
        w.set("mambacpp.ssm.dt_limit_hi", GgufValue::of_f32(static_cast<float>(hi)));
      }
    }
  };
  if (arch == "granitehybrid") {
    const bool bamba = c.family == "bamba";
    const int64_t E = bamba ? 0 : r.integer("num_local_experts", 0);
    const int64_t shared = r.integer("shared_intermediate_size", 0);
    w.set(key("feed_forward_length"), u32(bamba || E > 0 ? r.integer("intermediate_size", 0) : shared));
    if (E > 0) {
      w.set(key("expert_count"), u32(E));
      w.set(key("expert_used_count"), u32(r.integer("num_experts_per_tok", 0)));
      w.set(key("expert_shared_feed_forward_length"), u32(shared));
    }
    if (!bamba) {
      w.set(key("attention.scale"), GgufValue::of_f32(static_cast<float>(r.number(
                                        "attention_multiplier", 1.0 / std::sqrt(double(h.head_dim))))));
      w.set(key("embedding_scale"), GgufValue::of_f32(static_cast<float>(c.embed_scale)));
      w.set(key("residual_scale"),
            GgufValue::of_f32(static_cast<float>(r.number("residual_multiplier", 1.0))));
      w.set(key("logit_scale"), GgufValue::of_f32(static_cast<float>(r.number("logits_scaling", 1.0))));
    }
    const bool rope = bamba || r.string("position_embedding_type", "nope") == "rope";
    w.set(key("rope.scaling.finetuned"), GgufValue::of_bool(rope));  // Granite's switch for RoPE
    if (rope) {
      const io::Reader rp = r.child("rope_parameters");
      const double theta = rp.has("rope_theta") ? rp.number("rope_theta", 1e4) : r.number("rope_theta", 1e4);
      const double frac = rp.has("partial_rotary_factor") ? rp.number("partial_rotary_factor", 1.0)
                                                          : r.number("partial_rotary_factor", 1.0);
      w.set(key("rope.freq_base"), GgufValue::of_f32(static_cast<float>(theta)));
      w.set(key("rope.dimension_count"), u32(static_cast<int64_t>(double(h.head_dim) * frac)));
    }
    ssm2_keys();
  } else if (arch == "jamba") {
    const Mamba1Config& m = c.section<Mamba1Config>();
    w.set(key("feed_forward_length"), u32(r.integer("intermediate_size", 0)));
    w.set(key("ssm.conv_kernel"), u32(m.d_conv));
    w.set(key("ssm.inner_size"), u32(m.d_inner));
    w.set(key("ssm.state_size"), u32(m.d_state));
    w.set(key("ssm.time_step_rank"), u32(m.dt_rank));
    w.set(key("expert_count"), u32(r.integer("num_experts", 16)));
    w.set(key("expert_used_count"), u32(r.integer("num_experts_per_tok", 2)));
  } else if (arch == "falcon-h1") {
    w.set(key("feed_forward_length"), u32(r.integer("intermediate_size", 14336)));
    const io::Reader rp = r.child("rope_parameters");
    const double theta = rp.has("rope_theta") ? rp.number("rope_theta", 1e4) : r.number("rope_theta", 1e4);
    w.set(key("rope.freq_base"), GgufValue::of_f32(static_cast<float>(theta)));
    ssm2_keys();
  } else {  // nemotron_h[_moe]
    const std::vector<std::string> kinds = nemotron_kinds(r);
    std::vector<int64_t> ff(static_cast<size_t>(L), 0);
    for (int64_t i = 0; i < L; ++i) {
      const std::string& k = kinds.at(static_cast<size_t>(i));
      if (k == "mlp") ff[static_cast<size_t>(i)] = r.integer("intermediate_size", 0);
      if (k == "moe") ff[static_cast<size_t>(i)] = r.integer("moe_intermediate_size", 0);
    }
    w.set(key("feed_forward_length"), GgufValue::of_array(io::GgufType::i32, i32s(ff)));
    if (arch == "nemotron_h_moe") {
      w.set(key("expert_count"), u32(r.integer("n_routed_experts", 0)));
      w.set(key("expert_used_count"), u32(r.integer("num_experts_per_tok", 0)));
      w.set(key("expert_feed_forward_length"), u32(r.integer("moe_intermediate_size", 0)));
      w.set(key("expert_shared_feed_forward_length"),
            u32(r.integer("moe_shared_expert_intermediate_size", 0)));
      w.set(key("expert_shared_count"), u32(r.integer("n_shared_experts", 1)));
      w.set(key("expert_weights_norm"), GgufValue::of_bool(r.boolean("norm_topk_prob", true)));
      w.set(key("expert_weights_scale"),
            GgufValue::of_f32(static_cast<float>(r.number("routed_scaling_factor", 1.0))));
      w.set(key("expert_group_count"), u32(r.integer("n_group", 1)));
      w.set(key("expert_group_used_count"), u32(r.integer("topk_group", 1)));
    }
    ssm2_keys();
  }
}

std::optional<Param> family_param(const ModelConfig& c, const std::string& ours, const Shape& shape) {
  if (ours == c.embedding_name()) {
    Param p = whole("token_embd.weight", shape, true);  // used as stored (ops::embedding decodes rows)
    if (c.family == "falcon_h1") p.fold = {{0, shape[0], reader(c).number("embedding_multiplier", 1.0)}};
    return p;
  }
  if (ours == c.final_norm_name()) return whole("output_norm.weight", shape, false);
  if (ours == c.lm_head_name()) {
    Param p = whole("output.weight", shape, true);
    if (c.family == "falcon_h1") p.fold = {{0, shape[0], reader(c).number("lm_head_multiplier", 1.0)}};
    return p;
  }
  const std::string prefix = c.layers_name();
  if (!ours.starts_with(prefix)) return std::nullopt;
  const size_t dot = ours.find('.', prefix.size());
  if (dot == std::string::npos) return std::nullopt;
  int64_t layer = -1;
  try {
    layer = std::stoll(ours.substr(prefix.size(), dot - prefix.size()));
  } catch (...) {
    return std::nullopt;
  }
  if (layer < 0 || layer >= c.n_layer) return std::nullopt;
  const std::string blk = "blk." + std::to_string(layer) + ".", rest = ours.substr(dot + 1);
  if (c.family == "bamba" || c.family == "granitemoehybrid") return granite_param(c, layer, blk, rest, shape);
  if (c.family == "jamba") return jamba_param(c, layer, blk, rest, shape);
  if (c.family == "falcon_h1") return falcon_param(c, blk, rest, shape);
  if (c.family == "nemotron_h") return nemotron_param(c, layer, blk, rest, shape);
  return std::nullopt;
}

nlohmann::json family_config_of(const io::GgufFile& g, const std::string& arch) {
  auto key = [&](const std::string& k) { return arch + "." + k; };
  auto size = [&](const std::string& k, std::optional<int64_t> fallback = std::nullopt) {
    const int64_t v = fallback && !g.has(k) ? *fallback : g.get_int(k);
    if (v < 0 || v > (int64_t{1} << 24))
      throw_error(ErrorCode::parse, g.path(), ": metadata '", k, "' is ", v, ", expected 0 .. 2^24");
    return v;
  };
  const io::GgufTensorInfo* emb = g.find("token_embd.weight");
  if (!emb || emb->shape.size() != 2)
    throw_error(ErrorCode::not_found, g.path(),
                ": missing tensor 'token_embd.weight' [vocab, embedding_length]");
  const int64_t d_model = size(key("embedding_length")), L = size(key("block_count"));
  if (d_model < 1 || L < 1 || L > (int64_t{1} << 16))
    throw_error(ErrorCode::parse, g.path(), ": ", key("embedding_length"), " and ", key("block_count"),
                " must be positive (block_count at most 2^16), found ", d_model, " and ", L);
  // The last block must be in the file before any per-layer work (a hostile block_count).
  const std::string last = "blk." + std::to_string(L - 1) + ".attn_norm.weight";
  if (!g.find(last))
    throw_error(ErrorCode::not_found, g.path(), ": missing tensor '", last, "' (", key("block_count"), " is ",
                L, ")");
  const double eps = g.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5);
  const int64_t heads = size(key("attention.head_count"), 0);
  const std::vector<int64_t> kv = per_layer(g, key("attention.head_count_kv"), L, heads);
  auto has_tensor = [&](int64_t layer, const char* name) {
    return g.find("blk." + std::to_string(layer) + "." + name) != nullptr;
  };
  nlohmann::json j = {
      {"hidden_size", d_model},       {"num_hidden_layers", L},
      {"vocab_size", emb->shape[0]},  {"tie_word_embeddings", g.find("output.weight") == nullptr},
      {"num_attention_heads", heads}, {"pad_token_id", nullptr},
  };
  if (heads > 0) j["head_dim"] = size(key("attention.key_length"), d_model / heads);
  for (int64_t x : kv)
    if (x > 0) j["num_key_value_heads"] = x;
  // The Mamba-2 keys of the HF hybrids (bamba / granite / falcon names).
  auto mamba2_keys = [&](nlohmann::json& o) {
    const int64_t inner = size(key("ssm.inner_size")), n_heads = size(key("ssm.time_step_rank"));
    if (n_heads < 1 || inner % n_heads != 0)
      throw_error(ErrorCode::parse, g.path(), ": ", key("ssm.time_step_rank"), " (the head count) is ",
                  n_heads, ", expected a positive divisor of ", key("ssm.inner_size"), " ", inner);
    o["mamba_n_heads"] = n_heads;
    o["mamba_d_head"] = inner / n_heads;
    o["mamba_expand"] = static_cast<double>(inner) / static_cast<double>(d_model);
    o["mamba_n_groups"] = size(key("ssm.group_count"), 1);
    o["mamba_d_state"] = size(key("ssm.state_size"));
    o["mamba_d_conv"] = size(key("ssm.conv_kernel"));
    o["mamba_chunk_size"] = size("mambacpp.ssm.chunk_size", 256);
    o["mamba_conv_bias"] = true;
    o["mamba_proj_bias"] = false;
    if (g.has("mambacpp.ssm.dt_limit_lo"))
      o["time_step_limit"] = {g.get_float("mambacpp.ssm.dt_limit_lo"),
                              g.get_float("mambacpp.ssm.dt_limit_hi")};
    return inner;
  };
  if (arch == "granitehybrid") {
    j["model_type"] = "granitemoehybrid";
    j["rms_norm_eps"] = eps;
    const int64_t E = size(key("expert_count"), 0);
    const int64_t ff = size(key("feed_forward_length"), 0);
    j["num_local_experts"] = E;
    j["num_experts_per_tok"] = size(key("expert_used_count"), 0);
    j["intermediate_size"] = ff;
    j["shared_intermediate_size"] = E > 0 ? size(key("expert_shared_feed_forward_length"), 0) : ff;
    nlohmann::json types = nlohmann::json::array();
    for (int64_t x : kv) types.push_back(x > 0 ? "attention" : "mamba");
    j["layer_types"] = types;
    if (heads > 0 && g.has(key("attention.scale")))
      j["attention_multiplier"] = g.get_float(key("attention.scale"));
    j["embedding_multiplier"] = g.get_float(key("embedding_scale"), 1.0);
    j["residual_multiplier"] = g.get_float(key("residual_scale"), 1.0);
    j["logits_scaling"] = g.get_float(key("logit_scale"), 1.0);
    // llama.cpp: RoPE unless rope.scaling.finetuned says false.
    const bool rope = g.get_bool(key("rope.scaling.finetuned"), true);
    j["position_embedding_type"] = rope ? "rope" : "nope";
    if (rope && heads > 0) {
      const int64_t hd = j["head_dim"].get<int64_t>();
      j["rope_theta"] = g.get_float(key("rope.freq_base"), 10000.0);
      j["partial_rotary_factor"] = static_cast<double>(size(key("rope.dimension_count"), hd)) / double(hd);
    }
    if (heads > 0) j.erase("head_dim");  // Granite: hidden_size / heads
    mamba2_keys(j);
  } else if (arch == "jamba") {
    j["model_type"] = "jamba";
    j["rms_norm_eps"] = eps;
    j["intermediate_size"] = size(key("feed_forward_length"));
    j["mamba_d_conv"] = size(key("ssm.conv_kernel"));
    j["mamba_d_state"] = size(key("ssm.state_size"));
    j["mamba_dt_rank"] = size(key("ssm.time_step_rank"));
    j["mamba_expand"] = static_cast<double>(size(key("ssm.inner_size"))) / static_cast<double>(d_model);
    const int64_t E = size(key("expert_count"), 1);
    j["num_experts"] = E;
    j["num_experts_per_tok"] = size(key("expert_used_count"), 1);
    std::vector<bool> attn, moe;
    for (int64_t i = 0; i < L; ++i) {
      attn.push_back(kv[static_cast<size_t>(i)] > 0);
      moe.push_back(has_tensor(i, "ffn_gate_inp.weight"));
    }
    const auto [ap, ao] = period_of(attn, g.path(), "attention");
    const auto [ep, eo] = period_of(moe, g.path(), "MoE");
    j["attn_layer_period"] = ap;
    j["attn_layer_offset"] = ao;
    j["expert_layer_period"] = ep;
    j["expert_layer_offset"] = eo;
    if (std::none_of(moe.begin(), moe.end(), [](bool b) { return b; })) j["num_experts"] = 1;
  } else if (arch == "falcon-h1") {
    j["model_type"] = "falcon_h1";
    j["rms_norm_eps"] = eps;
    j["intermediate_size"] = size(key("feed_forward_length"));
    j["rope_theta"] = g.get_float(key("rope.freq_base"), 10000.0);
    j["mamba_d_ssm"] = mamba2_keys(j);
    j["mamba_rms_norm"] = g.find("blk.0.ssm_norm.weight") != nullptr;
    j["mamba_norm_before_gate"] = false;
    j["projectors_bias"] = false;
    j["num_key_value_heads"] = kv.empty() ? heads : kv[0];
    // The multipliers are in the weights already (its converter folds them).
  } else {  // nemotron_h[_moe]
    j["model_type"] = "nemotron_h";
    j["layer_norm_epsilon"] = eps;
    const std::vector<int64_t> ff = per_layer(g, key("feed_forward_length"), L, 0);
    nlohmann::json kinds = nlohmann::json::array();
    for (int64_t i = 0; i < L; ++i) {
      if (kv[static_cast<size_t>(i)] > 0) {
        kinds.push_back("attention");
      } else if (ff[static_cast<size_t>(i)] > 0) {
        // llama.cpp's nemotron_h_moe makes every FFN layer a MoE; ours tells them by the router.
        const bool moe = has_tensor(i, "ffn_gate_inp.weight");
        kinds.push_back(moe ? "moe" : "mlp");
        (moe ? j["moe_intermediate_size"] : j["intermediate_size"]) = ff[static_cast<size_t>(i)];
      } else {
        kinds.push_back("mamba");
      }
    }
    j["layers_block_type"] = kinds;
    const int64_t inner = size(key("ssm.inner_size")), n_heads = size(key("ssm.time_step_rank"));
    if (n_heads < 1 || inner % n_heads != 0)
      throw_error(ErrorCode::parse, g.path(), ": ", key("ssm.time_step_rank"), " (the head count) is ",
                  n_heads, ", expected a positive divisor of ", key("ssm.inner_size"), " ", inner);
    j["mamba_num_heads"] = n_heads;
    j["mamba_head_dim"] = inner / n_heads;
    j["n_groups"] = size(key("ssm.group_count"), 1);
    j["ssm_state_size"] = size(key("ssm.state_size"));
    j["conv_kernel"] = size(key("ssm.conv_kernel"));
    j["chunk_size"] = size("mambacpp.ssm.chunk_size", 128);
    j["use_conv_bias"] = true;
    j["use_bias"] = false;
    if (g.has("mambacpp.ssm.dt_limit_lo"))
      j["time_step_limit"] = {g.get_float("mambacpp.ssm.dt_limit_lo"),
                              g.get_float("mambacpp.ssm.dt_limit_hi")};
    j["n_routed_experts"] = size(key("expert_count"), 0);
    j["num_experts_per_tok"] = size(key("expert_used_count"), 0);
    j["moe_shared_expert_intermediate_size"] = size(key("expert_shared_feed_forward_length"), 0);
    j["n_shared_experts"] = size(key("expert_shared_count"), 1);
    j["norm_topk_prob"] = g.get_bool(key("expert_weights_norm"), true);
    j["routed_scaling_factor"] = g.get_float(key("expert_weights_scale"), 1.0);
    j["n_group"] = std::max<int64_t>(1, size(key("expert_group_count"), 1));
    j["topk_group"] = std::max<int64_t>(1, size(key("expert_group_used_count"), 1));
    j["mlp_hidden_act"] = "relu2";
  }
  return j;
}

}  // namespace mamba::models::gguf_map
