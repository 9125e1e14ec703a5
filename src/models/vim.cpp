// Vision Mamba (vim.h, docs/vision.md): config, weights, and the forward pass on ops::.
#include "models/vim.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "io/config_reader.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "models/architectures.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/norm/norm.h"
#include "ops/selective_scan/selective_scan.h"

namespace mamba::models {
namespace {

// Rows `ids` of `table` [rows, d] -> [ids..., d]: the gather the model uses to reverse sequences,
// insert class tokens and repeat position embeddings (ops::embedding, on every device).
Tensor gather_rows(ops::Exec& exec, const std::vector<int32_t>& ids, const Shape& id_shape,
                   const Tensor& table) {
  Tensor idx = Tensor::empty(id_shape, DType::i32);
  std::copy(ids.begin(), ids.end(), idx.data<int32_t>());
  return ops::embedding(exec, idx, table);
}

// x [batch, seq_len, c] (contiguous) reversed along the sequence: the backward direction's input.
Tensor flip_seq(ops::Exec& exec, const Tensor& x) {
  const int64_t b = x.size(0), l = x.size(1), c = x.size(2);
  std::vector<int32_t> ids(static_cast<size_t>(b * l));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t t = 0; t < l; ++t)
      ids[static_cast<size_t>(i * l + t)] = static_cast<int32_t>(i * l + (l - 1 - t));
  return gather_rows(exec, ids, {b * l}, x.contiguous().view({b * l, c})).view({b, l, c});
}

// One direction: conv + silu -> x_proj -> dt_proj -> Mamba-1 selective scan gated by silu(z),
// from zero states. xz: [batch, seq_len, 2·d_inner] (in_proj's [x | z]).
Tensor run_branch(ops::Exec& exec, const VimMixer& m, const VimBranch& w, const Tensor& xz) {
  const int64_t di = m.d_inner, n = m.d_state, r = m.dt_rank, batch = xz.size(0);
  Tensor conv_state = Tensor::zeros({batch, di, m.d_conv - 1}, DType::f32, xz.device());
  Tensor ssm_state = Tensor::zeros({batch, di, n}, DType::f32, xz.device());
  Tensor x =
      ops::causal_conv1d_fwd(exec, columns(xz, 0, di), w.conv_w, w.conv1d_bias, conv_state, /*silu=*/true);
  Tensor x_dbl = ops::linear(exec, x, w.x_proj_weight);  // [batch, seq_len, dt_rank + 2·d_state]
  ops::SelectiveScanArgs args;
  args.u = x;
  args.delta = ops::linear(exec, columns(x_dbl, 0, r).contiguous(), w.dt_proj_weight);  // bias in the scan
  args.delta_bias = w.dt_proj_bias;
  args.A = w.A;
  args.B = columns(x_dbl, r, n);
  args.C = columns(x_dbl, r + n, n);
  args.D = w.D;
  args.z = columns(xz, di, di);
  return ops::selective_scan_fwd(exec, args, ssm_state);  // [batch, seq_len, d_inner]
}

void read_class_names(VimConfig& c, const io::Reader& r, const std::string& dir) {
  if (r.has("id2label")) {
    const nlohmann::json& m = r.j.at("id2label");
    if (!m.is_object()) r.type_error("id2label", "an object {\"0\": \"name\", ...}", m);
    c.class_names.assign(static_cast<size_t>(std::max<int64_t>(c.num_classes, 0)), "");
    for (const auto& [k, v] : m.items()) {
      char* end = nullptr;
      const long long i = std::strtoll(k.c_str(), &end, 10);
      if (k.empty() || *end != 0 || i < 0 || i >= c.num_classes || !v.is_string())
        throw_error(ErrorCode::parse, r.where("id2label"), ": entry \"", k,
                    "\" must map a class index in [0, ", c.num_classes, ") to a string");
      c.class_names[static_cast<size_t>(i)] = v.get<std::string>();
    }
    return;
  }
  const std::string path = dir.empty() ? "" : path_join(dir, "classes.txt");
  if (path.empty() || !file_exists(path)) return;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    c.class_names.push_back(line);
  }
  if (static_cast<int64_t>(c.class_names.size()) != c.num_classes)
    throw_error(ErrorCode::shape, path, ": ", c.class_names.size(), " class names, expected num_classes ",
                c.num_classes);
}

}  // namespace

// ---- Config ----

VimConfig parse_vim_config(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw_error(ErrorCode::parse, source, ": expected a JSON object");
  const io::Reader r{j, source, ""};
  VimConfig c;
  const std::string type = r.string("model_type", "vim");
  if (type != "vim")
    throw_error(ErrorCode::parse, r.where("model_type"), " expected \"vim\", found \"", type, "\"");
  c.img_size = r.integer("img_size", c.img_size);
  c.patch_size = r.integer("patch_size", c.patch_size);
  c.stride = r.integer("stride", c.patch_size);
  c.channels = r.integer("channels", c.channels);
  c.embed_dim = r.integer("embed_dim", c.embed_dim);
  c.depth = r.integer("depth", c.depth);
  c.d_state = r.integer("d_state", c.d_state);
  c.num_classes = r.integer("num_classes", c.num_classes);
  // Mamba's own arguments may sit at the top or in ssm_cfg (VisionMamba passes ssm_cfg through).
  const io::Reader s = r.child("ssm_cfg");
  for (const io::Reader* q : {&r, &s}) {
    c.d_conv = q->integer("d_conv", c.d_conv);
    c.expand = q->number("expand", c.expand);
    if (q->has("dt_rank") && !(q->j.at("dt_rank").is_string() && q->string("dt_rank", "auto") == "auto"))
      c.dt_rank = q->integer("dt_rank", 0);
    c.conv_bias = q->boolean("conv_bias", c.conv_bias);
    c.bias = q->boolean("bias", c.bias);
  }
  c.bimamba_type = r.string("bimamba_type", c.bimamba_type);
  if (r.boolean("if_bimamba", false))
    throw_error(ErrorCode::unsupported, r.where("if_bimamba"),
                ": bimamba v1 (expected false; v2 is bimamba_type)");
  c.if_devide_out = r.boolean("if_devide_out", r.boolean("if_divide_out", c.if_devide_out));
  c.rms_norm = r.boolean("rms_norm", c.rms_norm);
  c.norm_epsilon = r.number("norm_epsilon", c.norm_epsilon);
  c.if_cls_token = r.boolean("if_cls_token", c.if_cls_token);
  c.use_middle_cls_token = r.boolean("use_middle_cls_token", c.use_middle_cls_token);
  c.use_double_cls_token = r.boolean("use_double_cls_token", c.use_double_cls_token);
  c.if_abs_pos_embed = r.boolean("if_abs_pos_embed", c.if_abs_pos_embed);
  c.final_pool_type = r.string("final_pool_type", c.final_pool_type);
  // Training-only or unimplemented variants: refused rather than silently ignored.
  for (const char* key : {"if_rope", "if_bidirectional"})
    if (r.boolean(key, false))
      throw_error(ErrorCode::unsupported, r.where(key), ": true is not supported (expected false)");
  if (r.has("init_layer_scale"))
    throw_error(ErrorCode::unsupported, r.where("init_layer_scale"),
                ": layer scale is not supported (expected null)");
  if (r.number("flip_img_sequences_ratio", -1) > 0)
    throw_error(ErrorCode::unsupported, r.where("flip_img_sequences_ratio"),
                ": random flips are training-only");
  // Preprocessing: timm's eval transform for crop_pct 0.875 unless given.
  c.crop = r.integer("crop", 0);
  c.resize = r.integer("resize", 0);
  for (const char* key : {"mean", "std"}) {
    const std::vector<double> v = io::number_list(r, key);
    if (v.empty()) continue;
    if (v.size() != 3) throw_error(ErrorCode::shape, r.where(key), ": expected 3 numbers, found ", v.size());
    auto& dst = std::string(key) == "mean" ? c.mean : c.std;
    for (size_t i = 0; i < 3; ++i) dst[i] = static_cast<float>(v[i]);
  }
  if (r.has("class_names")) {
    c.class_names = io::string_list(r, "class_names");
  } else if (std::filesystem::path p(source);
             p.filename() == "config.json") {  // a file: classes.txt beside it
    read_class_names(c, r, p.has_parent_path() ? p.parent_path().string() : std::string("."));
  } else {
    read_class_names(c, r, "");  // id2label only
  }
  c.finalize(source);
  return c;
}

void VimConfig::finalize(const std::string& src) {
  for (auto [name, v] : {std::pair<const char*, int64_t>{"img_size", img_size},
                         {"patch_size", patch_size},
                         {"stride", stride},
                         {"channels", channels},
                         {"embed_dim", embed_dim},
                         {"depth", depth},
                         {"d_state", d_state},
                         {"d_conv", d_conv}})
    io::require_positive(src, name, v);
  if (img_size > 4096 || embed_dim > 65536 || depth > 1024 || d_state > 1024 || d_conv > 64 || channels > 64)
    throw_error(ErrorCode::parse, src, ": implausible size (img_size ", img_size, ", embed_dim ", embed_dim,
                ", depth ", depth, ", d_state ", d_state, ", d_conv ", d_conv, ", channels ", channels, ")");
  if (num_classes < 0)
    throw_error(ErrorCode::parse, src, ": field 'num_classes' must be >= 0, found ", num_classes);
  if (patch_size > img_size)
    throw_error(ErrorCode::parse, src, ": patch_size ", patch_size, " is larger than img_size ", img_size);
  // The patches are unfolded as a grid of stride-sized blocks (vim.cpp: patch_embed).
  if (patch_size % stride != 0 || img_size % stride != 0)
    throw_error(ErrorCode::unsupported, src, ": stride ", stride, " must divide patch_size ", patch_size,
                " and img_size ", img_size);
  if (bimamba_type != "v2" && bimamba_type != "none")
    throw_error(ErrorCode::unsupported, src, ": field 'bimamba_type' expected \"v2\" or \"none\", found \"",
                bimamba_type, "\"");
  if (!if_cls_token && final_pool_type != "mean" && final_pool_type != "none")
    throw_error(ErrorCode::unsupported, src,
                ": field 'final_pool_type' expected \"mean\" or \"none\", found \"", final_pool_type, "\"");
  d_inner = io::expanded(expand, embed_dim, src);
  if (dt_rank == 0) dt_rank = (embed_dim + 15) / 16;
  io::require_positive(src, "dt_rank", dt_rank);
  grid_h = grid_w = (img_size - patch_size) / stride + 1;
  num_patches = grid_h * grid_w;
  num_tokens = !if_cls_token ? 0 : use_double_cls_token ? 2 : 1;
  seq_len = num_patches + num_tokens;
  cls_positions.clear();
  if (num_tokens == 2)
    cls_positions = {0, num_patches + 1};
  else if (num_tokens == 1)
    cls_positions = {use_middle_cls_token ? num_patches / 2 : 0};
  if (crop == 0) crop = img_size;
  if (resize == 0) resize = static_cast<int64_t>(std::floor(static_cast<double>(img_size) / 0.875));
  if (crop != img_size) throw_error(ErrorCode::parse, src, ": crop ", crop, " != img_size ", img_size);
  if (resize < crop) throw_error(ErrorCode::parse, src, ": resize ", resize, " is smaller than crop ", crop);
  if (!class_names.empty() && static_cast<int64_t>(class_names.size()) != num_classes)
    throw_error(ErrorCode::shape, src, ": ", class_names.size(), " class names, expected num_classes ",
                num_classes);
  for (float s : std)
    if (!(s > 0)) throw_error(ErrorCode::parse, src, ": field 'std' entries must be > 0");
}

nlohmann::json VimConfig::to_json() const {
  nlohmann::json j = {{"model_type", "vim"},
                      {"img_size", img_size},
                      {"patch_size", patch_size},
                      {"stride", stride},
                      {"channels", channels},
                      {"embed_dim", embed_dim},
                      {"depth", depth},
                      {"d_state", d_state},
                      {"d_conv", d_conv},
                      {"expand", expand},
                      {"dt_rank", dt_rank},
                      {"conv_bias", conv_bias},
                      {"bias", bias},
                      {"bimamba_type", bimamba_type},
                      {"if_devide_out", if_devide_out},
                      {"rms_norm", rms_norm},
                      {"norm_epsilon", norm_epsilon},
                      {"if_cls_token", if_cls_token},
                      {"use_middle_cls_token", use_middle_cls_token},
                      {"use_double_cls_token", use_double_cls_token},
                      {"if_abs_pos_embed", if_abs_pos_embed},
                      {"final_pool_type", final_pool_type},
                      {"num_classes", num_classes},
                      {"resize", resize},
                      {"crop", crop},
                      {"mean", mean},
                      {"std", std}};
  if (!class_names.empty()) j["class_names"] = class_names;
  return j;
}

// ---- The mixer ----

void VimMixer::prepare(ops::Exec& exec) {
  for (VimBranch* b : {&fwd, &bwd}) {
    if (!b->A_log.defined()) continue;
    b->A = ops::neg_exp(exec, b->A_log);
    b->conv_w = b->conv1d_weight.view({d_inner, d_conv});
  }
}

Tensor VimMixer::forward(ops::Exec& exec, const Tensor& u) const {
  const Tensor xz = ops::linear(exec, u, in_proj_weight, in_proj_bias);  // [batch, seq_len, 2·d_inner]
  Tensor y = run_branch(exec, *this, fwd, xz);
  if (bidirectional) {
    // The same Mamba-1 ops over the reversed sequence with the `_b` weights, reversed back.
    const Tensor y_b = run_branch(exec, *this, bwd, flip_seq(exec, xz));
    ops::add_(exec, y, flip_seq(exec, y_b));
    if (divide_out) ops::scale_(exec, y, 0.5f);
  }
  return ops::linear(exec, y, out_proj_weight, out_proj_bias);
}

// ---- The model ----

void VimModel::init_layout() {
  const VimConfig& c = config_;
  layers_.assign(static_cast<size_t>(c.depth), Layer{});
  for (Layer& l : layers_) {
    VimMixer& m = l.mixer;
    m.d_model = c.embed_dim;
    m.d_inner = c.d_inner;
    m.d_state = c.d_state;
    m.d_conv = c.d_conv;
    m.dt_rank = c.dt_rank;
    m.bidirectional = c.bimamba_type == "v2";
    m.divide_out = c.if_devide_out;
  }
}

void VimModel::visit_params(const std::function<void(const VimParam&)>& fn) {
  const VimConfig& c = config_;
  const int64_t d = c.embed_dim, di = c.d_inner, n = c.d_state, r = c.dt_rank, k = c.d_conv;
  if (c.num_tokens == 1) fn({"cls_token", &cls_token, {1, 1, d}});
  if (c.num_tokens == 2) {
    fn({"cls_token_head", &cls_token_head, {1, 1, d}});
    fn({"cls_token_tail", &cls_token_tail, {1, 1, d}});
  }
  if (c.if_abs_pos_embed) fn({"pos_embed", &pos_embed, {1, c.seq_len, d}});
  fn({"patch_embed.proj.weight", &patch_weight, {d, c.channels, c.patch_size, c.patch_size}, true});
  fn({"patch_embed.proj.bias", &patch_bias, {d}});
  if (c.num_classes > 0) {
    fn({"head.weight", &head_weight, {c.num_classes, d}, true});
    fn({"head.bias", &head_bias, {c.num_classes}});
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    VimMixer& m = layers_[i].mixer;
    fn({p + "mixer.in_proj.weight", &m.in_proj_weight, {2 * di, d}, true});
    if (c.bias) fn({p + "mixer.in_proj.bias", &m.in_proj_bias, {2 * di}});
    for (int dir = 0; dir < (m.bidirectional ? 2 : 1); ++dir) {
      VimBranch& b = dir == 0 ? m.fwd : m.bwd;
      const std::string s = dir == 0 ? "" : "_b";  // hustvl/Vim's names of the backward weights
      fn({p + (dir == 0 ? "mixer.A_log" : "mixer.A_b_log"), &b.A_log, {di, n}});
      fn({p + "mixer.D" + s, &b.D, {di}});
      fn({p + "mixer.conv1d" + s + ".weight", &b.conv1d_weight, {di, 1, k}});
      if (c.conv_bias) fn({p + "mixer.conv1d" + s + ".bias", &b.conv1d_bias, {di}});
      fn({p + "mixer.x_proj" + s + ".weight", &b.x_proj_weight, {r + 2 * n, di}, true});
      fn({p + "mixer.dt_proj" + s + ".weight", &b.dt_proj_weight, {di, r}, true});
      fn({p + "mixer.dt_proj" + s + ".bias", &b.dt_proj_bias, {di}});
    }
    fn({p + "mixer.out_proj.weight", &m.out_proj_weight, {d, di}, true});
    if (c.bias) fn({p + "mixer.out_proj.bias", &m.out_proj_bias, {d}});
    fn({p + "norm.weight", &layers_[i].norm_weight, {d}});
    if (!c.rms_norm) fn({p + "norm.bias", &layers_[i].norm_bias, {d}});
  }
  fn({"norm_f.weight", &norm_f_weight, {d}});
  if (!c.rms_norm) fn({"norm_f.bias", &norm_f_bias, {d}});
}

void VimModel::prepare() {
  ops::Exec exec(device_);
  for (Layer& l : layers_) l.mixer.prepare(exec);
}

VimModel VimModel::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::string dir = path, weights;
  if (fs::is_regular_file(path)) {
    dir = fs::path(path).has_parent_path() ? fs::path(path).parent_path().string() : ".";
    weights = path;
  } else if (!fs::is_directory(path)) {
    throw_error(ErrorCode::not_found, path, ": no such model folder or checkpoint file");
  } else if (!file_exists(path_join(dir, "model.safetensors"))) {
    // A folder with one torch.save file (the released vim_*.pth).
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file() && (ext == ".pth" || ext == ".pt" || ext == ".bin"))
        found.push_back(e.path().string());
    }
    if (found.size() != 1)
      throw_error(ErrorCode::not_found, dir,
                  ": expected model.safetensors or exactly one .pth/.pt/.bin file, found ", found.size(),
                  " checkpoint files");
    weights = found[0];
  } else {
    weights = path_join(dir, "model.safetensors");
  }
  VimModel m;
  m.config_ = parse_vim_config(io::read_config_json(dir), path_join(dir, "config.json"));
  m.init_layout();
  const io::SafeTensors st = io::SafeTensors::open(weights);
  std::set<std::string> used;
  m.visit_params([&](const VimParam& p) {
    *p.tensor = st.get_f32(p.name, p.shape);
    used.insert(p.name);
  });
  for (const std::string& name : st.names())
    if (!used.count(name))
      throw_error(ErrorCode::shape, weights, ": unexpected tensor '", name, "' (",
                  path_join(dir, "config.json"), " describes depth ", m.config_.depth, ", bimamba_type \"",
                  m.config_.bimamba_type, "\", ", m.config_.num_tokens, " class token(s))");
  m.prepare();
  return m;
}

VimModel VimModel::random(const VimConfig& config, uint64_t seed) {
  VimModel m;
  m.config_ = config;
  m.init_layout();
  std::mt19937_64 rng(seed);
  m.visit_params([&](const VimParam& p) {
    *p.tensor = Tensor::empty(p.shape);
    float* v = p.tensor->f32();
    const int64_t numel = p.tensor->numel();
    const std::string& name = p.name;
    auto ends = [&](const char* s) { return name.size() >= std::strlen(s) && name.ends_with(s); };
    if (ends("A_log") || ends("A_b_log")) {  // S4D-real: ln(1..d_state)
      for (int64_t i = 0; i < numel; ++i) v[i] = std::log(static_cast<float>(i % p.shape[1] + 1));
    } else if (ends(".D") || ends(".D_b") || ends("norm.weight") || ends("norm_f.weight")) {
      std::fill(v, v + numel, 1.0f);
    } else if (ends("dt_proj.bias") || ends("dt_proj_b.bias")) {  // softplus⁻¹ of dt in [1e-3, 1e-1)
      std::uniform_real_distribution<double> u(std::log(1e-3), std::log(1e-1));
      for (int64_t i = 0; i < numel; ++i) {
        const double dt = std::exp(u(rng));
        v[i] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
      }
    } else {
      const int64_t fan_in = p.shape.size() > 1 ? numel / p.shape[0] : p.shape[0];
      const float bound = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(fan_in, 1)));
      std::uniform_real_distribution<float> u(-bound, bound);
      for (int64_t i = 0; i < numel; ++i) v[i] = name.find("norm") != std::string::npos ? 0.0f : u(rng);
    }
  });
  m.prepare();
  return m;
}

void VimModel::save(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  const_cast<VimModel*>(this)->visit_params(
      [&](const VimParam& p) { tensors.emplace_back(p.name, p.tensor->to(Device::cpu).to(DType::f32)); });
  io::save_safetensors(path_join(dir, "model.safetensors"), tensors);
  write_file_atomic(path_join(dir, "config.json"), config_.to_json().dump(2) + "\n");
}

void VimModel::to(Device device) {
  if (device == device_) return;
  if (device == Device::cpu && matmul_dtype_ != DType::f32)
    throw_error(ErrorCode::unsupported, "the CPU ops take f32 weights: set_matmul_dtype(f32) before to(cpu)");
  visit_params([&](const VimParam& p) { *p.tensor = p.tensor->to(device); });
  device_ = device;
  prepare();
}

void VimModel::set_matmul_dtype(DType dtype) {
  if (dtype == matmul_dtype_) return;
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16)
    throw_error(ErrorCode::unsupported, "matmul dtype ", dtype_name(dtype), " (expected f32, bf16 or f16)");
  if (dtype != DType::f32 && device_ == Device::cpu)
    throw_error(ErrorCode::unsupported, dtype_name(dtype),
                " weights run on CUDA only: move the model to cuda first");
  visit_params([&](const VimParam& p) {
    if (!p.gemm) return;
    // The patch embedding is used as a [embed_dim, channels·patch²] matrix.
    *p.tensor = p.tensor->to(dtype);
  });
  matmul_dtype_ = dtype;
}

int64_t VimModel::num_params() const {
  int64_t n = 0;
  const_cast<VimModel*>(this)->visit_params([&](const VimParam& p) { n += shape_numel(p.shape); });
  return n;
}

// Conv2d(kernel p, stride s) as a GEMM: the image is viewed as a grid of s×s blocks; a patch is
// k×k blocks (k = p / s), so the unfolded patches are k² strided copies of that grid, then one
// linear layer with the conv weight as [embed_dim, channels·p·p] (PyTorch's (c, kh, kw) order).
Tensor VimModel::patch_embed(ops::Exec& exec, const Tensor& images) const {
  const VimConfig& c = config_;
  const int64_t b = images.size(0), ch = c.channels, s = c.stride, k = c.patch_size / s;
  const int64_t gh = c.grid_h, gw = c.grid_w, nb = c.img_size / s;
  const Tensor blocks = images.contiguous().view({b, ch, nb, s, nb, s});
  Tensor unfolded = Tensor::empty({b, gh, gw, ch, k, s, k, s}, DType::f32, images.device());
  for (int64_t a = 0; a < k; ++a)
    for (int64_t e = 0; e < k; ++e) {
      // [b, ch, gh, s, gw, s] -> [b, gh, gw, ch, s, s]
      const Tensor src =
          blocks.slice(2, a, a + gh).slice(4, e, e + gw).transpose(1, 2).transpose(2, 4).transpose(3, 4);
      unfolded.select(4, a).select(5, e).copy_from(src);
    }
  const Tensor patches = unfolded.view({b, gh * gw, ch * c.patch_size * c.patch_size});
  return ops::linear(exec, patches, patch_weight.view({c.embed_dim, ch * c.patch_size * c.patch_size}),
                     patch_bias);
}

Tensor VimModel::features(ops::Exec& exec, const Tensor& images_in) const {
  const VimConfig& c = config_;
  if (images_in.dim() != 4 || images_in.size(1) != c.channels || images_in.size(2) != c.img_size ||
      images_in.size(3) != c.img_size)
    throw_error(ErrorCode::shape, "Vim input: expected images [batch, ", c.channels, ", ", c.img_size, ", ",
                c.img_size, "], found ", shape_str(images_in.shape()));
  if (images_in.dtype() != DType::f32)
    throw_error(ErrorCode::dtype, "Vim input: expected f32 images, found ", dtype_name(images_in.dtype()));
  ops::ExecScope scope(exec);
  const Tensor images = images_in.to(device_);
  const int64_t b = images.size(0), d = c.embed_dim, m = c.num_patches, l = c.seq_len;
  const Tensor patches = patch_embed(exec, images);  // [b, m, d]
  // The token sequence: patches with the class token(s) inserted, one gather from
  // [patch rows of every image | class token rows].
  Tensor x;
  if (c.num_tokens == 0) {
    x = patches;
  } else {
    Tensor table = Tensor::empty({b * m + c.num_tokens, d}, DType::f32, device_);
    table.slice(0, 0, b * m).copy_from(patches.view({b * m, d}));
    if (c.num_tokens == 1) {
      table.slice(0, b * m, b * m + 1).copy_from(cls_token.view({1, d}));
    } else {
      table.slice(0, b * m, b * m + 1).copy_from(cls_token_head.view({1, d}));
      table.slice(0, b * m + 1, b * m + 2).copy_from(cls_token_tail.view({1, d}));
    }
    std::vector<int32_t> ids(static_cast<size_t>(b * l));
    for (int64_t i = 0; i < b; ++i) {
      int64_t patch = 0, cls = 0;
      for (int64_t t = 0; t < l; ++t) {
        const bool is_cls = cls < c.num_tokens && t == c.cls_positions[static_cast<size_t>(cls)];
        ids[static_cast<size_t>(i * l + t)] = static_cast<int32_t>(is_cls ? b * m + cls++ : i * m + patch++);
      }
    }
    x = gather_rows(exec, ids, {b, l}, table);
  }
  if (c.if_abs_pos_embed) {  // + pos_embed, repeated over the batch by a gather
    std::vector<int32_t> ids(static_cast<size_t>(b * l));
    for (int64_t i = 0; i < b * l; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i % l);
    ops::add_(exec, x, gather_rows(exec, ids, {b, l}, pos_embed.view({l, d})));
  }
  // Add -> norm -> mixer with an fp32 residual (the first block's residual is its input).
  const float eps = static_cast<float>(c.norm_epsilon);
  Tensor residual = x, hidden;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& layer = layers_[i];
    Tensor normed;
    if (i == 0)
      normed = c.rms_norm ? ops::rms_norm(exec, residual, layer.norm_weight, eps)
                          : ops::layer_norm(exec, residual, layer.norm_weight, layer.norm_bias, eps);
    else
      normed = c.rms_norm
                   ? ops::add_rms_norm_(exec, residual, hidden, layer.norm_weight, eps)
                   : ops::add_layer_norm_(exec, residual, hidden, layer.norm_weight, layer.norm_bias, eps);
    hidden = layer.mixer.forward(exec, normed);
  }
  Tensor out;
  if (layers_.empty())
    out = c.rms_norm ? ops::rms_norm(exec, residual, norm_f_weight, eps)
                     : ops::layer_norm(exec, residual, norm_f_weight, norm_f_bias, eps);
  else
    out = c.rms_norm ? ops::add_rms_norm_(exec, residual, hidden, norm_f_weight, eps)
                     : ops::add_layer_norm_(exec, residual, hidden, norm_f_weight, norm_f_bias, eps);
  // Pooling: the class token, the mean of the two (double), the mean over tokens, or the last.
  if (c.num_tokens == 1) return out.select(1, c.cls_positions[0]).contiguous();
  if (c.num_tokens == 2) {
    Tensor f = out.select(1, c.cls_positions[0]).contiguous();
    ops::add_(exec, f, out.select(1, c.cls_positions[1]).contiguous());
    ops::scale_(exec, f, 0.5f);
    return f;
  }
  if (c.final_pool_type == "none") return out.select(1, l - 1).contiguous();
  // mean over the sequence as a GEMM with a 1/L row: [b, d, l] · [1, l]ᵀ
  const Tensor avg = Tensor::full({1, l}, 1.0f / static_cast<float>(l)).to(device_);
  return ops::linear(exec, out.transpose(1, 2).contiguous(), avg).view({b, d});
}

Tensor VimModel::forward(ops::Exec& exec, const Tensor& images) const {
  const Tensor f = features(exec, images);
  if (config_.num_classes == 0) return f;
  ops::ExecScope scope(exec);
  return ops::linear(exec, f, head_weight, head_bias);
}

}  // namespace mamba::models
