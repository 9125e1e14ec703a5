// llama.cpp's GGUF models of the `mamba` and `mamba2` architectures, read and written
// (Model::load_gguf / Model::save_gguf; docs/quantization.md). One table maps our parameter
// names onto llama.cpp's (`blk.N.ssm_in.weight`, ...) with the transforms of its converter
// (convert_hf_to_gguf.py: A stored as −exp(A_log), conv1d squeezed to [channels, width],
// Mamba-2's A and D as [n_heads, 1], its norm as [n_groups, d_inner / n_groups]).
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "io/gguf.h"
#include "models/model.h"
#include "ops/exec.h"
#include "ops/quant/quant_linear.h"

namespace mamba::models {
namespace {

// How values move between our parameter and llama.cpp's tensor.
enum class Transform {
  none,     // the same values and shape
  reshape,  // the same values, another shape (conv1d, Mamba-2's A / D / norm)
  neg_exp,  // llama.cpp's ssm_a = −exp(A_log), and A_log = log(−ssm_a) back
};

struct GgufParam {
  std::string name;  // llama.cpp's tensor name
  Transform transform;
  bool quantize;  // written in the requested type (the linear layers and the embedding)
  bool in_place;  // loaded as stored when bf16 / block-format (the linear layers and the head)
};

// llama.cpp's name for one of our parameters (state-spaces or HF names), nullopt for none.
std::optional<GgufParam> gguf_param(const ModelConfig& c, const std::string& ours) {
  if (ours == c.embedding_name()) return GgufParam{"token_embd.weight", Transform::none, true, false};
  if (ours == c.final_norm_name()) return GgufParam{"output_norm.weight", Transform::none, false, false};
  if (ours == c.lm_head_name()) return GgufParam{"output.weight", Transform::none, true, true};
  const std::string prefix = c.layers_name();
  if (ours.rfind(prefix, 0) != 0) return std::nullopt;
  const size_t dot = ours.find('.', prefix.size());
  if (dot == std::string::npos) return std::nullopt;
  const std::string blk = "blk." + ours.substr(prefix.size(), dot - prefix.size()) + ".";
  const std::string rest = ours.substr(dot + 1);
  const bool m2 = c.ssm_layer == MixerKind::mamba2;
  struct Row {
    const char* ours;
    const char* theirs;
    Transform transform;
    bool linear;
  };
  static const Row rows[] = {
      {"norm.weight", "attn_norm.weight", Transform::none, false},
      {"mixer.in_proj.weight", "ssm_in.weight", Transform::none, true},
      {"mixer.conv1d.weight", "ssm_conv1d.weight", Transform::reshape, false},
      {"mixer.conv1d.bias", "ssm_conv1d.bias", Transform::none, false},
      {"mixer.x_proj.weight", "ssm_x.weight", Transform::none, true},
      {"mixer.dt_proj.weight", "ssm_dt.weight", Transform::none, true},
      {"mixer.dt_proj.bias", "ssm_dt.bias", Transform::none, false},
      {"mixer.dt_bias", "ssm_dt.bias", Transform::none, false},
      {"mixer.A_log", "ssm_a", Transform::neg_exp, false},
      {"mixer.D", "ssm_d", Transform::none, false},
      {"mixer.norm.weight", "ssm_norm.weight", Transform::reshape, false},
      {"mixer.out_proj.weight", "ssm_out.weight", Transform::none, true},
  };
  for (const Row& r : rows)
    if (rest == r.ours) {
      const bool reshape = r.transform == Transform::reshape || (m2 && rest == "mixer.D");
      return GgufParam{blk + r.theirs, reshape ? Transform::reshape : r.transform, r.linear, r.linear};
    }
  return std::nullopt;
}

// The shape llama.cpp's loader expects (PyTorch order) for a parameter of shape `ours`.
Shape gguf_shape(const ModelConfig& c, const std::string& theirs, const Shape& ours) {
  const bool m2 = c.ssm_layer == MixerKind::mamba2;
  auto ends = [&](const char* s) { return theirs.ends_with(s); };
  if (ends("ssm_conv1d.weight")) return {ours[0], ours[2]};
  if (m2 && (ends("ssm_a") || ends("ssm_d"))) return {ours[0], 1};
  if (m2 && ends("ssm_norm.weight")) {
    const int64_t groups = c.mamba2.norm_n_groups > 0 ? c.mamba2.norm_n_groups : c.mamba2.n_groups;
    return {groups, ours[0] / groups};
  }
  return ours;
}

// llama.cpp's architecture for this config, or Error(unsupported) naming what it lacks.
std::string llama_arch(const ModelConfig& c, const std::string& path) {
  auto refuse = [&](const std::string& what) {
    throw_error(ErrorCode::unsupported, path, ": llama.cpp's mamba / mamba2 GGUF cannot hold ", what);
  };
  if (!c.family.empty()) refuse("the '" + c.family + "' family");
  if (!c.attn_layer_idx.empty()) refuse("attention layers");
  if (c.d_intermediate > 0) refuse("an MLP (d_intermediate > 0)");
  if (!c.rms_norm) refuse("LayerNorm blocks (rms_norm false)");
  if (c.embed_scale != 1.0 || c.logits_scale != 1.0) refuse("embedding / logits multipliers");
  if (c.ssm_layer == MixerKind::mamba1) {
    const Mamba1Config& m = c.mamba1;
    if (m.bias || !m.conv_bias) refuse("Mamba-1 without conv bias or with projection biases");
    if (m.bcdt_norm == Mamba1Config::BcdtNorm::learned) refuse("learned dt/B/C norms (Jamba)");
    return "mamba";
  }
  if (c.ssm_layer == MixerKind::mamba2) {
    const Mamba2Config& m = c.mamba2;
    if (m.bias || !m.conv_bias) refuse("Mamba-2 without conv bias or with projection biases");
    if (!m.rmsnorm || m.norm_before_gate) refuse("Mamba-2 without the gated RMSNorm after the gate");
    if (m.D_has_hdim || m.d_ssm != m.d_inner || m.d_mlp != 0) refuse("Mamba-2 with D per channel or d_ssm");
    if (m.dt_limit_lo != 0.0 || !std::isinf(m.dt_limit_hi)) refuse("a dt limit");
    return "mamba2";
  }
  refuse(std::string("the ") + mixer_kind_name(c.ssm_layer) + " mixer");
  return "";
}

// The type a weight row of `row` values is written in: `dtype` when the row is a whole number of
// its blocks, else q4_0 (for q4_k), else f32 (llama.cpp's quantize falls back likewise).
DType row_type(DType dtype, int64_t row) {
  if (row % dtype_block_values(dtype) == 0) return dtype;
  if (dtype == DType::q4_k && row % 32 == 0) return DType::q4_0;
  return DType::f32;
}

uint32_t llama_file_type(DType dtype) {  // llama.h's LLAMA_FTYPE_*
  switch (dtype) {
    case DType::bf16:
      return 32;
    case DType::q8_0:
      return 7;
    case DType::q4_0:
      return 2;
    case DType::q4_k:
      return 15;  // MOSTLY_Q4_K_M (every quantized tensor is q4_k here)
    default:
      return 0;
  }
}

// config.json-style fields (HF layout) from the GGUF metadata, for Model::config_from_json.
nlohmann::json config_of(const io::GgufFile& g, const std::string& arch) {
  auto key = [&](const std::string& k) { return arch + "." + k; };
  // Every size key: an integer in [1, 2^24] (far above any model; the config checks the rest).
  auto size = [&](const std::string& k, std::optional<int64_t> fallback = std::nullopt) {
    const int64_t v = fallback && !g.has(k) ? *fallback : g.get_int(k);
    if (v < 1 || v > (int64_t{1} << 24))
      throw_error(ErrorCode::parse, g.path(), ": metadata '", k, "' is ", v, ", expected 1 .. 2^24");
    return v;
  };
  const io::GgufTensorInfo* emb = g.find("token_embd.weight");
  if (!emb || emb->shape.size() != 2)
    throw_error(ErrorCode::not_found, g.path(),
                ": missing tensor 'token_embd.weight' [vocab, embedding_length]");
  const int64_t d_model = size(key("embedding_length"));
  const int64_t d_inner = size(key("ssm.inner_size"));
  nlohmann::json j = {
      {"hidden_size", d_model},
      {"num_hidden_layers", size(key("block_count"))},
      {"vocab_size", emb->shape[0]},
      {"state_size", size(key("ssm.state_size"))},
      {"conv_kernel", size(key("ssm.conv_kernel"))},
      {"expand", static_cast<double>(d_inner) / static_cast<double>(d_model)},
      {"layer_norm_epsilon", g.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5)},
      {"use_bias", false},
      {"use_conv_bias", true},
      {"tie_word_embeddings", g.find("output.weight") == nullptr},
  };
  if (arch == "mamba") {
    const bool bcdt = g.get_bool(key("ssm.dt_b_c_rms"), false);
    j["model_type"] = bcdt ? "falcon_mamba" : "mamba";
    j["intermediate_size"] = d_inner;
    j["time_step_rank"] = size(key("ssm.time_step_rank"));
    // llama.cpp normalizes dt, B and C with the blocks' epsilon; ours may say otherwise.
    if (bcdt)
      j["mixer_rms_eps"] = g.get_float("mambacpp.ssm.mixer_rms_eps", j["layer_norm_epsilon"].get<double>());
  } else {
    const int64_t heads = size(key("ssm.time_step_rank"));
    if (d_inner % heads != 0)
      throw_error(ErrorCode::parse, g.path(), ": ", key("ssm.time_step_rank"), " (the head count) is ", heads,
                  ", expected a positive divisor of ", key("ssm.inner_size"), " ", d_inner);
    j["model_type"] = "mamba2";
    j["num_heads"] = heads;
    j["head_dim"] = d_inner / heads;
    j["n_groups"] = size(key("ssm.group_count"), 1);
    j["chunk_size"] = size("mambacpp.ssm.chunk_size", 256);
  }
  return j;
}

}  // namespace

Model Model::load_gguf(const std::string& path) {
  const io::GgufFile g = io::GgufFile::open(path);
  const std::string arch = g.get_string("general.architecture");
  if (arch != "mamba" && arch != "mamba2")
    throw_error(ErrorCode::unsupported, path, ": general.architecture is '", arch,
                "', expected 'mamba' or 'mamba2'");
  Model m;
  m.config_ = config_from_json(config_of(g, arch), path);
  // The metadata's sizes must be the file's before anything is built: the embedding is
  // [vocab, embedding_length] and the last block's input projection exists (a block_count of 2^24
  // in a small file would otherwise build 16M empty blocks before the first missing tensor).
  const io::GgufTensorInfo* emb = g.find("token_embd.weight");
  if (emb->shape[1] != m.config_.d_model)
    throw_error(ErrorCode::parse, path, ": tensor 'token_embd.weight' is ", shape_str(emb->shape),
                ", expected [vocab, ", m.config_.d_model, "] (", arch, ".embedding_length)");
  const std::string last = "blk." + std::to_string(m.config_.n_layer - 1) + ".ssm_in.weight";
  if (!g.find(last))
    throw_error(ErrorCode::not_found, path, ": missing tensor '", last, "' (", arch, ".block_count is ",
                m.config_.n_layer, ")");
  m.build();
  m.visit_params([&](const ParamRef& p) {
    const std::optional<GgufParam> gp = gguf_param(m.config_, p.name);
    if (!gp) throw_error(ErrorCode::unsupported, path, ": no llama.cpp tensor for parameter '", p.name, "'");
    const io::GgufTensorInfo* t = g.find(gp->name);
    if (!t)
      throw_error(ErrorCode::not_found, path, ": missing tensor '", gp->name, "' (expected shape ",
                  shape_str(gguf_shape(m.config_, gp->name, p.shape)), ")");
    if (gp->in_place && ops::is_quant_weight(t->dtype) && t->shape == p.shape) {
      *p.tensor = g.get(gp->name);  // used from the mapping as stored
      return;
    }
    Tensor v = g.get_f32(gp->name, p.shape, gp->transform != Transform::none);
    if (gp->transform == Transform::neg_exp)
      for (int64_t i = 0; i < v.numel(); ++i) v.f32()[i] = std::log(-v.f32()[i]);
    *p.tensor = v;
  });
  ops::Exec exec(m.device_);
  m.prepare(exec);
  // A tied head reads the embedding table as stored (the lookup itself needs f32 rows).
  if (m.config_.tie_embeddings && ops::is_quant_weight(emb->dtype))
    m.lm_head_weight = g.get("token_embd.weight");
  return m;
}

void Model::save_gguf(const std::string& path, DType dtype) const {
  if (dtype != DType::f32 && !ops::is_quant_weight(dtype))
    throw_error(ErrorCode::unsupported, "GGUF weight type ", dtype_name(dtype),
                " (expected f32, bf16, q8_0, q4_0, q4_k)");
  const std::string arch = llama_arch(config_, path);
  const ModelConfig& c = config_;
  io::GgufWriter w;
  auto u32 = [](int64_t v) { return io::GgufValue::of_u32(static_cast<uint32_t>(v)); };
  w.set("general.architecture", io::GgufValue::of_string(arch));
  w.set("general.name", io::GgufValue::of_string("mambacpp"));
  w.set("general.file_type", io::GgufValue::of_u32(llama_file_type(dtype)));
  if (dtype_is_block(dtype)) w.set("general.quantization_version", io::GgufValue::of_u32(2));
  w.set(arch + ".context_length", u32(1 << 20));  // no limit; llama.cpp's converter writes the same
  w.set(arch + ".embedding_length", u32(c.d_model));
  w.set(arch + ".feed_forward_length", u32(0));
  w.set(arch + ".attention.head_count", u32(0));
  w.set(arch + ".block_count", u32(c.n_layer));
  w.set(arch + ".vocab_size", u32(c.vocab_padded));
  w.set(arch + ".attention.layer_norm_rms_epsilon", io::GgufValue::of_f32(static_cast<float>(c.norm_eps)));
  if (arch == "mamba") {
    w.set(arch + ".ssm.conv_kernel", u32(c.mamba1.d_conv));
    w.set(arch + ".ssm.inner_size", u32(c.mamba1.d_inner));
    w.set(arch + ".ssm.state_size", u32(c.mamba1.d_state));
    w.set(arch + ".ssm.time_step_rank", u32(c.mamba1.dt_rank));
    const bool bcdt = c.mamba1.bcdt_norm == Mamba1Config::BcdtNorm::weightless;
    w.set(arch + ".ssm.dt_b_c_rms", io::GgufValue::of_bool(bcdt));
    if (bcdt)
      w.set("mambacpp.ssm.mixer_rms_eps", io::GgufValue::of_f32(static_cast<float>(c.mamba1.bcdt_norm_eps)));
  } else {
    w.set(arch + ".ssm.conv_kernel", u32(c.mamba2.d_conv));
    w.set(arch + ".ssm.inner_size", u32(c.mamba2.d_inner));
    w.set(arch + ".ssm.state_size", u32(c.mamba2.d_state));
    w.set(arch + ".ssm.time_step_rank", u32(c.mamba2.n_heads));
    w.set(arch + ".ssm.group_count", u32(c.mamba2.n_groups));
    w.set("mambacpp.ssm.chunk_size", u32(c.mamba2.chunk_size));
  }
  // No vocabulary here (docs/quantization.md): llama.cpp then numbers vocab_size tokens.
  w.set("tokenizer.ggml.model", io::GgufValue::of_string("none"));
  const_cast<Model*>(this)->visit_params([&](const ParamRef& p) {
    const std::optional<GgufParam> gp = gguf_param(c, p.name);
    if (!gp) throw_error(ErrorCode::unsupported, path, ": no llama.cpp tensor for parameter '", p.name, "'");
    Tensor v = ops::dequantize(p.tensor->to(Device::cpu).contiguous());
    if (gp->transform == Transform::neg_exp) {
      v = v.copy();
      for (int64_t i = 0; i < v.numel(); ++i) v.f32()[i] = -std::exp(v.f32()[i]);
    }
    v = v.view(gguf_shape(c, gp->name, p.shape));
    if (gp->quantize && v.dim() == 2) {
      const DType t = row_type(dtype, v.size(1));
      if (t != DType::f32) v = ops::quantize(v, t);
    }
    w.add(gp->name, v);
  });
  w.write(path);
}

}  // namespace mamba::models
