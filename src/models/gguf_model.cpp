// llama.cpp's GGUF models of the `mamba` and `mamba2` architectures, read and written
// (Model::load_gguf / Model::save_gguf; docs/quantization.md). One table maps our parameter
// names onto llama.cpp's (`blk.N.ssm_in.weight`, ...) with the transforms of its converter
// (convert_hf_to_gguf.py: A stored as −exp(A_log), conv1d squeezed to [channels, width],
// Mamba-2's A and D as [n_heads, 1], its norm as [n_groups, d_inner / n_groups]).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "io/gguf.h"
#include "io/mapped_file.h"
#include "models/gguf_map.h"
#include "models/mamba1.h"
#include "models/mamba2.h"
#include "models/model.h"
#include "ops/exec.h"
#include "ops/quant/quant_linear.h"

namespace mamba::models {
namespace {

using gguf_map::Param;
using gguf_map::Part;
using gguf_map::Transform;

// The shape llama.cpp's loader expects (PyTorch order) for a parameter of shape `ours`.
Shape gguf_shape(const ModelConfig& c, const std::string& theirs, const Shape& ours) {
  const bool m2 = c.ssm_layer == MixerKind::mamba2;
  auto ends = [&](const char* s) { return theirs.ends_with(s); };
  if (ends("ssm_conv1d.weight")) return {ours[0], ours[2]};
  if (m2 && (ends("ssm_a") || ends("ssm_d"))) return {ours[0], 1};
  if (m2 && ends("ssm_norm.weight")) {
    const Mamba2Config& m = c.section<Mamba2Config>();
    const int64_t groups = m.norm_n_groups > 0 ? m.norm_n_groups : m.n_groups;
    return {groups, ours[0] / groups};
  }
  return ours;
}

}  // namespace

// llama.cpp's name for one of our parameters (state-spaces or HF names), nullopt for none.
std::optional<Param> gguf_map::mamba_param(const ModelConfig& c, const std::string& ours,
                                           const Shape& shape) {
  auto one = [&](std::string name, Transform t, bool quantize, bool in_place) {
    Param p;
    p.shape = gguf_shape(c, name, shape);
    p.parts = {Part{std::move(name)}};
    p.transform = t;
    p.quantize = quantize;
    p.in_place = in_place;
    return p;
  };
  // The embedding too is used as stored: the lookup decodes only its rows (ops::embedding).
  if (ours == c.embedding_name()) return one("token_embd.weight", Transform::none, true, true);
  if (ours == c.final_norm_name()) return one("output_norm.weight", Transform::none, false, false);
  if (ours == c.lm_head_name()) return one("output.weight", Transform::none, true, true);
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
      return one(blk + r.theirs, reshape ? Transform::reshape : r.transform, r.linear, r.linear);
    }
  return std::nullopt;
}

namespace {

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
    const Mamba1Config& m = c.section<Mamba1Config>();
    if (m.bias || !m.conv_bias) refuse("Mamba-1 without conv bias or with projection biases");
    if (m.bcdt_norm == Mamba1Config::BcdtNorm::learned) refuse("learned dt/B/C norms (Jamba)");
    return "mamba";
  }
  if (c.ssm_layer == MixerKind::mamba2) {
    const Mamba2Config& m = c.section<Mamba2Config>();
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

// Rows of a [rows, ...] tensor in llama.cpp's RoPE order (LlamaModel.permute: within each of
// `heads` heads, row 2j + k of the file is row k·half + j of ours), or back. Whole rows move, so a
// quantized tensor keeps its type.
void check_permutable(int64_t rows, int64_t heads, const std::string& what) {
  if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
    throw_error(ErrorCode::shape, what, ": ", rows, " rows are no whole number of ", heads,
                " heads of even size (llama.cpp's RoPE row order)");
}
Tensor permute_rows(const Tensor& v, int64_t heads, bool to_file, const std::string& what) {
  const int64_t rows = v.size(0);
  check_permutable(rows, heads, what);
  const Tensor src = v.contiguous();
  const size_t row_bytes = src.nbytes() / static_cast<size_t>(rows);
  Tensor out = Tensor::empty(v.shape(), v.dtype());
  const int64_t hd = rows / heads, half = hd / 2;
  const auto* in = static_cast<const uint8_t*>(src.raw());
  auto* o = static_cast<uint8_t*>(out.raw());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t k = 0; k < 2; ++k) {
        const int64_t file = h * hd + 2 * j + k, ours = h * hd + k * half + j;
        const int64_t dst = to_file ? file : ours, from = to_file ? ours : file;
        std::memcpy(o + static_cast<size_t>(dst) * row_bytes, in + static_cast<size_t>(from) * row_bytes,
                    row_bytes);
      }
  return out;
}

// Our [.., 2n, in] rows [half·n, half·n + n) <-> a [.., n, in] tensor.
void copy_half(float* ours, float* file, const Shape& our_shape, int half, bool to_file) {
  const int64_t in = our_shape.back(), n2 = our_shape[our_shape.size() - 2], n = n2 / 2;
  int64_t outer = 1;
  for (size_t d = 0; d + 2 < our_shape.size(); ++d) outer *= our_shape[d];
  for (int64_t o = 0; o < outer; ++o) {
    float* a = ours + (o * n2 + half * n) * in;
    float* b = file + o * n * in;
    if (to_file)
      std::copy_n(a, n * in, b);
    else
      std::copy_n(b, n * in, a);
  }
}

Shape half_shape(const Shape& ours) {
  Shape s = ours;
  s[s.size() - 2] /= 2;
  return s;
}

std::optional<Param> param_of(const ModelConfig& c, bool family, const std::string& name,
                              const Shape& shape) {
  if (shape.size() >= 2 && family) {
    std::optional<Param> p = gguf_map::family_param(c, name, shape);
    if (p && p->parts.size() == 2 && shape[shape.size() - 2] % 2 != 0) return std::nullopt;
    return p;
  }
  return family ? gguf_map::family_param(c, name, shape) : gguf_map::mamba_param(c, name, shape);
}

// The tensors used as stored, moved from the file's mapping into one buffer of 2 MiB pages
// (io::huge_page_buffer): decode streams every weight once a token, and from the mapping's 4 KiB
// pages it read ~20% slower (docs/quantization.md, "Decode bandwidth"). pread copies from the
// page cache without mapping it, so the resident set holds the weights once, as with the mapping
// (whose pages of these tensors were never touched). LoadOptions::gguf_mapped (`--mmap`) keeps the
// mapping (its pages are shared with other processes mapping the same file).
struct Resident {
  Tensor* tensor;
  Shape shape;
  DType dtype;
  std::vector<const io::GgufTensorInfo*> parts;  // their bytes one after the other (gate | up rows)
  int64_t permute_heads = 0;                     // > 0: one part, rows read into our RoPE order
};
void read_resident(const io::GgufFile& g, const std::vector<Resident>& ts) {
  if (ts.empty()) return;
  auto padded = [](uint64_t bytes) { return (bytes + 63) / 64 * 64; };
  uint64_t total = 0;
  for (const Resident& r : ts) {
    uint64_t n = 0;
    for (const io::GgufTensorInfo* t : r.parts) n += t->bytes;
    total += padded(n);
  }
  std::shared_ptr<Buffer> buf = io::huge_page_buffer(static_cast<size_t>(total));
  std::vector<io::FileRange> ranges;
  uint64_t at = 0;
  for (const Resident& r : ts) {
    *r.tensor = Tensor::from_buffer(buf, static_cast<size_t>(at), r.shape, r.dtype);
    char* base = static_cast<char*>(buf->data());
    if (r.permute_heads > 0) {  // permute_rows' order, a read per row
      const io::GgufTensorInfo* t = r.parts[0];
      const int64_t rows = r.shape[0], hd = rows / r.permute_heads, half = hd / 2;
      const uint64_t row_bytes = t->bytes / static_cast<uint64_t>(rows);
      for (int64_t h = 0; h < r.permute_heads; ++h)
        for (int64_t j = 0; j < half; ++j)
          for (int64_t k = 0; k < 2; ++k) {
            const auto file = static_cast<uint64_t>(h * hd + 2 * j + k),
                       ours = static_cast<uint64_t>(h * hd + k * half + j);
            ranges.push_back(
                {t->offset + file * row_bytes, static_cast<size_t>(row_bytes), base + at + ours * row_bytes});
          }
      at += t->bytes;
    }
    for (const io::GgufTensorInfo* t : r.parts) {
      if (r.permute_heads > 0) break;
      ranges.push_back({t->offset, static_cast<size_t>(t->bytes), base + at});
      at += t->bytes;
    }
    at = padded(at);
  }
  io::read_file_ranges(g.path(), ranges);
}

}  // namespace

Model Model::load_gguf(const std::string& path, const LoadOptions& options) {
  const io::GgufFile g = io::GgufFile::open(path);
  const std::string arch = g.get_string("general.architecture");
  const bool family = gguf_map::is_family_arch(arch);
  if (arch != "mamba" && arch != "mamba2" && !family)
    throw_error(ErrorCode::unsupported, path, ": general.architecture is '", arch,
                "', expected mamba, mamba2, granitehybrid, jamba, falcon-h1, nemotron_h or nemotron_h_moe");
  Model m;
  m.config_ = config_from_json(family ? gguf_map::family_config_of(g, arch) : config_of(g, arch), path);
  // The metadata's sizes must be the file's before anything is built: the embedding is
  // [vocab, embedding_length] and the last block's first tensor exists (a block_count of 2^24
  // in a small file would otherwise build 16M empty blocks before the first missing tensor).
  const io::GgufTensorInfo* emb = g.find("token_embd.weight");
  if (emb->shape[1] != m.config_.d_model)
    throw_error(ErrorCode::parse, path, ": tensor 'token_embd.weight' is ", shape_str(emb->shape),
                ", expected [vocab, ", m.config_.d_model, "] (", arch, ".embedding_length)");
  const std::string last =
      "blk." + std::to_string(m.config_.n_layer - 1) + (family ? ".attn_norm.weight" : ".ssm_in.weight");
  if (!g.find(last))
    throw_error(ErrorCode::not_found, path, ": missing tensor '", last, "' (", arch, ".block_count is ",
                m.config_.n_layer, ")");
  m.build();
  std::map<std::string, Tensor> stacked;  // dequantized [experts, ...] tensors, shared by the experts
  std::vector<Resident> resident;         // used as stored
  auto tensor_info = [&](const std::string& name, const Shape& expected) {
    const io::GgufTensorInfo* t = g.find(name);
    if (!t)
      throw_error(ErrorCode::not_found, path, ": missing tensor '", name, "' (expected shape ",
                  shape_str(expected), ")");
    return t;
  };
  m.visit_params([&](const ParamRef& p) {
    const std::optional<Param> gp = param_of(m.config_, family, p.name, p.shape);
    if (!gp) throw_error(ErrorCode::unsupported, path, ": no llama.cpp tensor for parameter '", p.name, "'");
    Tensor v;
    const Part& first = gp->parts.at(0);
    if (first.expert >= 0) {
      Shape full = p.shape;
      full.insert(full.begin(), first.experts);
      const io::GgufTensorInfo* t = tensor_info(first.name, full);
      auto it = stacked.find(first.name);
      if (it == stacked.end()) it = stacked.emplace(first.name, g.get_f32(first.name, t->shape)).first;
      const Tensor& all = it->second;
      Shape rest(all.shape().begin() + 1, all.shape().end());
      if (all.dim() != static_cast<int64_t>(p.shape.size()) + 1 || rest != p.shape ||
          all.size(0) <= first.expert)
        throw_error(ErrorCode::shape, path, ": tensor '", first.name, "' is ", shape_str(all.shape()),
                    ", expected [>", first.expert, ", ", shape_str(p.shape).substr(1));
      v = all.select(0, first.expert).copy();
    } else if (first.half >= 0) {
      // A 2-D gate | up weight stored as two tensors of one type (Granite's MLP): their rows one
      // after the other, used as stored (whole rows of blocks), not converted to f32.
      if (p.shape.size() == 2 && gp->parts.size() == 2 && gp->parts[0].half == 0 && gp->parts[1].half == 1) {
        const io::GgufTensorInfo* a = tensor_info(gp->parts[0].name, half_shape(p.shape));
        const io::GgufTensorInfo* b = tensor_info(gp->parts[1].name, half_shape(p.shape));
        if (a->dtype == b->dtype && a->shape == half_shape(p.shape) && b->shape == a->shape &&
            (a->dtype == DType::f32 || ops::is_quant_weight(a->dtype))) {
          resident.push_back({p.tensor, p.shape, a->dtype, {a, b}});
          return;
        }
      }
      v = Tensor::empty(p.shape, DType::f32);
      for (const Part& part : gp->parts) {
        tensor_info(part.name, half_shape(p.shape));
        Tensor h = g.get_f32(part.name, half_shape(p.shape));
        copy_half(v.f32(), h.f32(), p.shape, part.half, false);
      }
    } else {
      const Shape& file_shape = gp->shape.empty() ? p.shape : gp->shape;
      const io::GgufTensorInfo* t = tensor_info(first.name, file_shape);
      // f32 as stored too (a copy would double the resident set: the mapping's pages and the copy).
      if (t->dtype == DType::f32 && t->shape == p.shape && gp->transform == Transform::none) {
        *p.tensor = g.get(first.name);
        resident.push_back({p.tensor, t->shape, t->dtype, {t}});
        return;
      }
      if (gp->in_place && ops::is_quant_weight(t->dtype) && t->shape == p.shape) {
        *p.tensor = g.get(first.name);  // used as stored (q / k: rows reordered)
        if (gp->transform == Transform::permute) {
          check_permutable(p.shape[0], gp->heads, path + ": " + first.name);
          resident.push_back({p.tensor, t->shape, t->dtype, {t}, gp->heads});
        } else {
          resident.push_back({p.tensor, t->shape, t->dtype, {t}});
        }
        return;
      }
      // f32 q / k likewise: rows reordered as read, next to v in the buffer (so the attention's
      // stacked q | k | v is a view of them, not a copy: stack_rows).
      if (t->dtype == DType::f32 && t->shape == p.shape && gp->transform == Transform::permute) {
        check_permutable(p.shape[0], gp->heads, path + ": " + first.name);
        *p.tensor = g.get(first.name);
        resident.push_back({p.tensor, t->shape, t->dtype, {t}, gp->heads});
        return;
      }
      v = g.get_f32(first.name, p.shape, gp->transform != Transform::none);
    }
    if (gp->transform == Transform::neg_exp)
      for (int64_t i = 0; i < v.numel(); ++i) v.f32()[i] = std::log(-v.f32()[i]);
    if (gp->transform == Transform::permute) v = permute_rows(v, gp->heads, false, path + ": " + first.name);
    *p.tensor = v;
  });
  stacked.clear();
  if (options.gguf_mapped) {  // the file's mapping; the gate | up pairs still copied
    for (Resident& r : resident) {
      if (r.permute_heads > 0) {
        *r.tensor =
            permute_rows(g.read(r.parts[0]->name), r.permute_heads, false, path + ": " + r.parts[0]->name);
        continue;
      }
      if (r.parts.size() == 1) continue;
      *r.tensor = Tensor::empty(r.shape, r.dtype);
      auto* dst = static_cast<uint8_t*>(r.tensor->raw());
      for (const io::GgufTensorInfo* t : r.parts) {
        std::memcpy(dst, g.get(t->name).raw(), static_cast<size_t>(t->bytes));
        dst += t->bytes;
      }
    }
  } else {
    read_resident(g, resident);
  }
  ops::Exec exec(m.device_);
  m.prepare(exec);
  return m;  // a tied head is the embedding table as stored (prepare), through the quantized linear
}

void Model::save_gguf(const std::string& path, DType dtype,
                      const std::vector<std::pair<std::string, io::GgufValue>>& metadata) const {
  if (dtype != DType::f32 && !ops::is_quant_weight(dtype))
    throw_error(ErrorCode::unsupported, "GGUF weight type ", dtype_name(dtype),
                " (expected f32, bf16, q8_0, q4_0, q4_k)");
  const ModelConfig& c = config_;
  const bool family = !c.family.empty();
  const std::string arch = family ? gguf_map::family_arch(c, path) : llama_arch(c, path);
  io::GgufWriter w;
  auto u32 = [](int64_t v) { return io::GgufValue::of_u32(static_cast<uint32_t>(v)); };
  w.set("general.architecture", io::GgufValue::of_string(arch));
  w.set("general.name", io::GgufValue::of_string("mambacpp"));
  w.set("general.file_type", io::GgufValue::of_u32(llama_file_type(dtype)));
  if (dtype_is_block(dtype)) w.set("general.quantization_version", io::GgufValue::of_u32(2));
  if (family) {
    gguf_map::family_metadata(w, c, arch);
  } else {
    w.set(arch + ".context_length", u32(1 << 20));  // no limit; llama.cpp's converter writes the same
    w.set(arch + ".embedding_length", u32(c.d_model));
    w.set(arch + ".feed_forward_length", u32(0));
    w.set(arch + ".attention.head_count", u32(0));
    w.set(arch + ".block_count", u32(c.n_layer));
    w.set(arch + ".vocab_size", u32(c.vocab_padded));
    w.set(arch + ".attention.layer_norm_rms_epsilon", io::GgufValue::of_f32(static_cast<float>(c.norm_eps)));
  }
  if (arch == "mamba") {
    const Mamba1Config& m = c.section<Mamba1Config>();
    w.set(arch + ".ssm.conv_kernel", u32(m.d_conv));
    w.set(arch + ".ssm.inner_size", u32(m.d_inner));
    w.set(arch + ".ssm.state_size", u32(m.d_state));
    w.set(arch + ".ssm.time_step_rank", u32(m.dt_rank));
    const bool bcdt = m.bcdt_norm == Mamba1Config::BcdtNorm::weightless;
    w.set(arch + ".ssm.dt_b_c_rms", io::GgufValue::of_bool(bcdt));
    if (bcdt) w.set("mambacpp.ssm.mixer_rms_eps", io::GgufValue::of_f32(static_cast<float>(m.bcdt_norm_eps)));
  } else if (arch == "mamba2") {
    const Mamba2Config& m = c.section<Mamba2Config>();
    w.set(arch + ".ssm.conv_kernel", u32(m.d_conv));
    w.set(arch + ".ssm.inner_size", u32(m.d_inner));
    w.set(arch + ".ssm.state_size", u32(m.d_state));
    w.set(arch + ".ssm.time_step_rank", u32(m.n_heads));
    w.set(arch + ".ssm.group_count", u32(m.n_groups));
    w.set("mambacpp.ssm.chunk_size", u32(m.chunk_size));
  }
  bool vocabulary = false;
  for (const auto& [key, value] : metadata) {
    w.set(key, value);
    vocabulary = vocabulary || key == "tokenizer.ggml.model";
  }
  // No vocabulary given: llama.cpp then numbers vocab_size tokens.
  if (!vocabulary) w.set("tokenizer.ggml.model", io::GgufValue::of_string("none"));
  auto stored = [&](Tensor v, bool quantize) {
    if (quantize && v.dim() >= 2) {
      const DType t = row_type(dtype, v.size(-1));
      if (t != DType::f32) v = ops::quantize(v, t);
    }
    return v;
  };
  // Tensors assembled from several parameters (stacked experts, gate | up halves), in order.
  std::vector<std::pair<std::string, bool>> order;
  std::map<std::string, Tensor> assembled;
  auto slot = [&](const std::string& name, const Shape& shape, bool quantize) -> Tensor& {
    auto it = assembled.find(name);
    if (it == assembled.end()) {
      order.emplace_back(name, quantize);
      it = assembled.emplace(name, Tensor::zeros(shape, DType::f32)).first;
    }
    return it->second;
  };
  const_cast<Model*>(this)->visit_params([&](const ParamRef& p) {
    const std::optional<Param> gp = param_of(c, family, p.name, p.shape);
    if (!gp) throw_error(ErrorCode::unsupported, path, ": no llama.cpp tensor for parameter '", p.name, "'");
    Tensor v = ops::dequantize(p.tensor->to(Device::cpu).contiguous()).copy();
    const int64_t row = v.numel() / std::max<int64_t>(v.size(0), 1);
    for (const gguf_map::RowScale& s : gp->fold)
      for (int64_t i = s.begin * row; i < s.end * row; ++i) v.f32()[i] *= static_cast<float>(s.factor);
    if (gp->transform == Transform::neg_exp)
      for (int64_t i = 0; i < v.numel(); ++i) v.f32()[i] = -std::exp(v.f32()[i]);
    if (gp->transform == Transform::permute) v = permute_rows(v, gp->heads, true, p.name);
    const Part& first = gp->parts.at(0);
    if (first.expert >= 0) {
      Shape full = p.shape;
      full.insert(full.begin(), first.experts);
      Tensor& all = slot(first.name, full, gp->quantize);
      std::copy_n(v.f32(), v.numel(), all.f32() + first.expert * v.numel());
    } else if (first.half >= 0) {
      for (const Part& part : gp->parts)
        copy_half(v.f32(), slot(part.name, half_shape(p.shape), gp->quantize).f32(), p.shape, part.half,
                  true);
    } else {
      w.add(first.name, stored(v.view(gp->shape.empty() ? p.shape : gp->shape), gp->quantize));
    }
  });
  for (const auto& [name, quantize] : order) w.add(name, stored(assembled.at(name), quantize));
  w.write(path);
}

}  // namespace mamba::models
