// The language-model skeleton shared by every architecture (SPEC.md §4.2-§4.4): residual
// stream, norms, gated MLP, embedding and head, loading and random initialization, and the
// training forward / backward / loss over the same walk.
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/file_util.h"
#include "core/parallel.h"
#include "io/safetensors.h"
#include "models/families/family.h"
#include "models/model.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "ops/device.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/norm/norm.h"

namespace mamba::models {

State State::copy() const {
  State s;
  s.batch = batch;
  s.position = position;
  s.layers = layers;
  for (LayerState& l : s.layers) l.visit([](const char*, Tensor& t) { t = t.copy(); });
  return s;
}

int64_t State::bytes() const {
  int64_t total = 0;
  for (LayerState l : layers)
    l.visit([&](const char*, Tensor& t) { total += static_cast<int64_t>(t.nbytes()); });
  return total;
}

Tensor GatedMlp::forward(ops::Exec& exec, const Tensor& x) const {
  const Tensor h = ops::linear(exec, x, fc1_weight);  // [..., 2·hidden] = [y | gate]
  return ops::linear(exec, ops::swiglu(exec, h, /*gate_first=*/false), fc2_weight);
}

Tensor GatedMlp::forward_train(ops::Exec& exec, const Tensor& x, MlpSaved& saved) const {
  saved.x = x;
  saved.h = ops::linear(exec, x, fc1_weight);
  saved.a = ops::swiglu(exec, saved.h, /*gate_first=*/false);
  return ops::linear(exec, saved.a, fc2_weight);
}

Tensor GatedMlp::backward(ops::Exec& exec, const Tensor& dout, const MlpSaved& saved, GatedMlp& grads) const {
  Tensor no_bias;
  const Tensor da = ops::linear_bwd(exec, dout, saved.a, fc2_weight, grads.fc2_weight, no_bias);
  const Tensor dh = ops::swiglu_bwd(exec, da, saved.h, /*gate_first=*/false);
  return ops::linear_bwd(exec, dh, saved.x, fc1_weight, grads.fc1_weight, no_bias);
}

void Model::build() {
  const int64_t n_layer = config_.n_layer;
  blocks_.clear();
  blocks_.resize(static_cast<size_t>(n_layer));
  if (!config_.family.empty()) {
    const Family& family = find_family(config_.family, "config.json");
    BuildContext ctx;
    for (int64_t i = 0; i < n_layer; ++i) family.build_block(config_, i, blocks_[i], ctx);
    return;
  }
  for (int64_t i = 0; i < n_layer; ++i) {
    blocks_[i].mixer = make_mixer(config_.layer_kind(i), config_, i);
    if (config_.d_intermediate > 0) blocks_[i].mlp = std::make_unique<GatedMlp>();
  }
}

void Model::visit_params(const ParamVisitor& fn) {
  const int64_t D = config_.d_model, V = config_.vocab_padded;
  const bool ln = !config_.rms_norm;
  fn({config_.embedding_name(), &embedding, {V, D}, false, {Init::Kind::embedding}});
  for (size_t i = 0; i < blocks_.size(); ++i) {
    Block& b = blocks_[i];
    const std::string prefix = config_.layers_name() + std::to_string(i) + ".";
    auto prefixed = [&](const ParamRef& p) { fn(p.renamed(prefix + p.name)); };
    // A mixer's "mixer.X" names as the family spells them ("mamba.X").
    auto renamed = [&](const ParamRef& p) {
      if (!b.mixer_prefix.empty() && p.name.rfind("mixer.", 0) == 0)
        prefixed(p.renamed(b.mixer_prefix + p.name.substr(6)));
      else
        prefixed(p);
    };
    if (b.has_norm) {
      prefixed({b.norm_name + ".weight", &b.norm_weight, {D}, true, Init::ones()});
      if (ln) prefixed({b.norm_name + ".bias", &b.norm_bias, {D}, true, Init::zeros()});
    }
    b.mixer->visit_params(renamed);
    if (b.mixer_par) b.mixer_par->visit_params(renamed);
    if (b.mlp || b.ffn) {
      prefixed({b.norm2_name + ".weight", &b.norm2_weight, {D}, true, Init::ones()});
      if (ln) prefixed({b.norm2_name + ".bias", &b.norm2_bias, {D}, true, Init::zeros()});
    }
    if (b.mlp) {
      prefixed({"mlp.fc1.weight", &b.mlp->fc1_weight, {2 * config_.mlp_hidden, D}});
      prefixed({"mlp.fc2.weight", &b.mlp->fc2_weight, {D, config_.mlp_hidden}, false, Init::residual_out()});
    }
    if (b.ffn) b.ffn->visit_params(renamed);
  }
  fn({config_.final_norm_name(), &norm_f_weight, {D}, true, Init::ones()});
  if (ln) fn({"backbone.norm_f.bias", &norm_f_bias, {D}, true, Init::zeros()});
  if (!config_.tie_embeddings) fn({config_.lm_head_name(), &lm_head_weight, {V, D}});
}

int64_t Model::n_params() const {
  int64_t n = 0;
  const_cast<Model*>(this)->visit_params([&](const ParamRef& p) { n += shape_numel(p.shape); });
  return n;
}

void Model::prepare(ops::Exec& exec) {
  if (config_.tie_embeddings) lm_head_weight = embedding;
  for (Block& b : blocks_) {
    b.mixer->prepare(exec);
    if (b.mixer_par) b.mixer_par->prepare(exec);
    if (b.ffn) b.ffn->prepare(exec);
  }
}

Model Model::load(const std::string& dir, const LoadOptions& options) {
  if (dir.ends_with(".gguf")) return load_gguf(dir, options);
  Model m;
  m.config_ = load_model_config(dir);
  if (!m.config_.family.empty())
    find_family(m.config_.family, path_join(dir, "config.json"))
        .configure(m.config_, path_join(dir, "config.json"));
  m.build();
  const io::SafeTensors st = io::SafeTensors::open(dir);
  std::string source = path_join(dir, "model.safetensors");  // the file the tensors come from, for errors
  for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                           "pytorch_model.bin.index.json"})
    if (file_exists(path_join(dir, name))) {
      source = path_join(dir, name);
      break;
    }
  m.visit_params([&](const ParamRef& p) {
    if (!st.contains(p.name))
      throw_error(ErrorCode::not_found, source, ": missing tensor '", p.name, "' (expected shape ",
                  shape_str(p.shape), ")");
    *p.tensor = st.get_f32(p.name, p.shape);
  });
  ops::Exec exec(m.device_);  // derived constants are computed on the model's device
  m.prepare(exec);
  return m;
}

// From-scratch initialization following the reference (SPEC §1.1, §2.1, §3.2, §4.6): each
// parameter carries its rule (ParamRef::init, chosen by the file that declares it); the draws
// follow visit order, so a seed gives the same model on every build.
Model Model::random(const ModelConfig& config, uint64_t seed) {
  Model m;
  m.config_ = config;
  m.build();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const double inv_sqrt_layers = 1.0 / std::sqrt(static_cast<double>(config.n_layer));
  m.visit_params([&](const ParamRef& p) {
    Tensor t = Tensor::empty(p.shape);
    float* v = t.f32();
    const int64_t n = t.numel();
    const Init& init = p.init;
    const int64_t fan_in = p.shape.size() >= 2 ? shape_numel(p.shape) / p.shape[0] : 1;
    const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
    auto uniform = [&](float b) {
      for (int64_t i = 0; i < n; ++i) v[i] = (2.0f * unit(rng) - 1.0f) * b;
    };
    switch (init.kind) {
      case Init::Kind::fan_in:
        uniform(bound);
        break;
      case Init::Kind::residual_out:
        uniform(static_cast<float>(bound * inv_sqrt_layers));
        break;
      case Init::Kind::embedding:
        for (int64_t i = 0; i < n; ++i) v[i] = normal(rng);
        break;
      case Init::Kind::constant:
        t.fill(static_cast<float>(init.a));
        break;
      case Init::Kind::uniform:
        uniform(static_cast<float>(init.a));
        break;
      case Init::Kind::a_log_s4d:
        for (int64_t i = 0; i < n; ++i) v[i] = std::log(static_cast<float>(i % p.shape.back() + 1));
        break;
      case Init::Kind::a_log_range:
        for (int64_t i = 0; i < n; ++i)
          v[i] = std::log(static_cast<float>(init.a + unit(rng) * (init.b - init.a)));
        break;
      case Init::Kind::dt_bias:  // dt ~ log-uniform in [a, b), floored at c, stored as its inverse softplus
        for (int64_t i = 0; i < n; ++i) {
          const double dt = std::max(
              std::exp(unit(rng) * (std::log(init.b) - std::log(init.a)) + std::log(init.a)), init.c);
          v[i] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
        }
        break;
    }
    *p.tensor = t;
  });
  ops::Exec exec(m.device_);  // derived constants are computed on the model's device
  m.prepare(exec);
  return m;
}

void Model::save(const std::string& dir) const {
  if (!config_.family.empty())
    throw_error(ErrorCode::unsupported, dir, ": saving a ", config_.family,
                " model is not supported (checkpoints are written in the state-spaces/mamba layout)");
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  // Always the state-spaces/mamba names (an HF checkpoint is saved in that family too).
  const_cast<Model*>(this)->visit_params([&](const ParamRef& p) {
    tensors.emplace_back(p.name == config_.embedding_name() ? "backbone.embedding.weight" : p.name,
                         *p.tensor);
  });
  if (config_.tie_embeddings) tensors.emplace_back("lm_head.weight", embedding);
  io::save_safetensors(path_join(dir, "model.safetensors"), tensors, {{"format", "pt"}});
  write_file_atomic(path_join(dir, "config.json"), to_mamba_ssm_json(config_).dump(4) + "\n");
}

Model Model::new_grads() const {
  Model g;
  g.config_ = config_;
  g.device_ = device_;
  g.build();
  // f32 on the model's device, whatever the matmul dtype: gradients accumulate in fp32.
  g.visit_params([&](const ParamRef& p) { *p.tensor = Tensor::zeros(p.shape, DType::f32, device_); });
  g.lm_head_weight = config_.tie_embeddings ? g.embedding : g.lm_head_weight;
  return g;
}

void Model::to(Device device) {
  if (device == device_) return;
  bool quantized = lm_head_weight.defined() && dtype_is_block(lm_head_weight.dtype());
  visit_params([&](const ParamRef& p) { quantized = quantized || dtype_is_block(p.tensor->dtype()); });
  if (device != Device::cpu && quantized)
    throw_error(ErrorCode::unsupported, "quantized (GGUF q8_0 / q4_0 / q4_k) weights run on the CPU only");
  if (device == Device::cpu && matmul_dtype_ != DType::f32)
    throw_error(ErrorCode::unsupported, "the CPU ops take f32 weights: set_matmul_dtype(f32) before to(cpu)");
  visit_params([&](const ParamRef& p) {
    if (p.tensor->defined()) *p.tensor = p.tensor->to(device);
  });
  device_ = device;
  ops::Exec exec(device_);
  prepare(exec);  // re-derives the tied head and each mixer's constants from the moved parameters
}

void Model::set_matmul_dtype(DType dtype) {
  if (dtype == matmul_dtype_) return;
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16)
    throw_error(ErrorCode::unsupported, "matmul dtype ", dtype_name(dtype), " (expected f32, bf16 or f16)");
  if (dtype != DType::f32 && device_ == Device::cpu)
    throw_error(ErrorCode::unsupported, dtype_name(dtype),
                " weights run on CUDA only: move the model to cuda first");
  auto ends_with = [](const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
  };
  visit_params([&](const ParamRef& p) {
    const bool gemm = ends_with(p.name, "proj.weight") || ends_with(p.name, "fc1.weight") ||
                      ends_with(p.name, "fc2.weight") || ends_with(p.name, "_linear.weight") ||
                      p.name == config_.lm_head_name();
    if (gemm) *p.tensor = p.tensor->to(dtype);
  });
  matmul_dtype_ = dtype;
  ops::Exec exec(device_);
  if (!config_.family.empty()) prepare(exec);  // the families' fused weights (q|k|v, gate|up) follow
  if (config_.tie_embeddings) lm_head_weight = embedding.to(dtype);  // the embedding itself stays f32
}

State Model::new_state(int64_t batch) const {
  State s;
  s.batch = batch;
  // A device model's state is allocated there and zeroed by the device (on the bound stream, if
  // any): the mixers give the shapes at batch 0 (every state tensor is batch-major), so no host
  // buffer of the state's size is filled and copied over.
  const int64_t shape_batch = device_ == Device::cpu ? batch : 0;
  for (const Block& b : blocks_) {
    s.layers.push_back(b.mixer->new_state(shape_batch));
    if (b.mixer_par) {  // both mixers of a parallel block share one LayerState (disjoint fields)
      LayerState par = b.mixer_par->new_state(shape_batch);
      LayerState& into = s.layers.back();
      par.visit([&](const char* name, Tensor& t) {
        into.visit([&](const char* other, Tensor&) {
          MAMBA_CHECK(std::strcmp(name, other) != 0, "parallel mixers both keep state '" << name << "'");
        });
      });
      if (par.conv.defined()) into.conv = par.conv;
      if (par.ssm.defined()) into.ssm = par.ssm;
      if (par.k_cache.defined()) into.k_cache = par.k_cache;
      if (par.v_cache.defined()) into.v_cache = par.v_cache;
      if (par.angle.defined() || par.k_prev.defined() || par.v_prev.defined())
        throw_error(ErrorCode::unsupported, "a Mamba-3 mixer in a parallel block");
    }
    if (device_ != Device::cpu)
      s.layers.back().visit([&](const char*, Tensor& t) {
        Shape shape = t.shape();
        shape[0] = batch;
        t = Tensor::zeros(shape, t.dtype(), device_);
      });
  }
  return s;
}

double SublayerTimes::total() const {
  double t = 0;
  for (const auto& [label, s] : seconds) t += s;
  return t;
}

template <typename F>
Tensor Model::timed(const std::string& label, F&& f) const {
  if (!timing_) return f();
  ops::device_synchronize(device_);
  const auto t0 = std::chrono::steady_clock::now();
  Tensor out = f();
  ops::device_synchronize(device_);
  timing_->seconds[label] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

ModelConfig Model::config_from_json(const nlohmann::json& j, const std::string& source) {
  ModelConfig c = parse_model_config(j, source);
  if (!c.family.empty()) find_family(c.family, source).configure(c, source);
  return c;
}

bool Model::reads_embeddings() const {
  for (const Block& b : blocks_)
    if (b.mixer->reads_embeddings()) return true;
  return false;
}

Tensor Model::embed(ops::Exec& exec, const Tensor& ids) const {
  Tensor e = ops::embedding(exec, ids, embedding);
  if (config_.embed_scale != 1.0) ops::scale_(exec, e, static_cast<float>(config_.embed_scale));
  return e;
}

Tensor Model::norm(ops::Exec& exec, const Tensor& x, const Tensor& w, const Tensor& b) const {
  const float eps = static_cast<float>(config_.norm_eps);
  return config_.rms_norm ? ops::rms_norm(exec, x, w, eps) : ops::layer_norm(exec, x, w, b, eps);
}

Tensor Model::norm_bwd(ops::Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dw,
                       Tensor& db) const {
  const float eps = static_cast<float>(config_.norm_eps);
  return config_.rms_norm ? ops::rms_norm_bwd(exec, dy, x, w, eps, dw)
                          : ops::layer_norm_bwd(exec, dy, x, w, eps, dw, db);
}

Tensor Model::head(ops::Exec& exec, const Tensor& residual) const {
  Tensor logits = ops::linear(exec, norm(exec, residual, norm_f_weight, norm_f_bias), lm_head_weight);
  if (config_.logits_scale != 1.0) ops::scale_(exec, logits, static_cast<float>(config_.logits_scale));
  return logits;
}

Tensor Model::forward(ops::Exec& exec, const Tensor& ids, State& state, int64_t num_last) const {
  const ops::ExecScope bind(exec);  // the tensor work between ops runs on exec's stream too
  MAMBA_CHECK(ids.dim() == 2 && ids.size(0) == state.batch, "ids " << shape_str(ids.shape()));
  const int64_t seq_len = ids.size(1);
  // residual = hidden + residual; hidden = Norm(residual); hidden = Mixer(hidden) (§4.3).
  Tensor residual = embed(exec, ids);  // [batch, seq_len, d_model]
  const Tensor emb = reads_embeddings() ? residual.copy() : Tensor();
  Tensor hidden;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    // Each sublayer's output is released once added (during a prefill chunk it is part of the
    // peak resident set).
    if (hidden.defined()) ops::add_(exec, residual, hidden);
    hidden = Tensor();
    LayerState& st = state.layers[i];
    const Tensor x = b.has_norm ? norm(exec, residual, b.norm_weight, b.norm_bias) : residual;
    hidden = timed(b.mixer->label(), [&] {
      return b.mixer->reads_embeddings() ? b.mixer->forward_emb(exec, x, emb, st, state.position)
                                         : b.mixer->forward(exec, x, st, state.position);
    });
    if (b.mixer_par)
      ops::add_(exec, hidden, timed(b.mixer_par->label(), [&] {
                  return b.mixer_par->forward(exec, x, st, state.position);
                }));
    if (b.mixer_scale != 1.0f) ops::scale_(exec, hidden, b.mixer_scale);
    if (b.mlp) {
      ops::add_(exec, residual, hidden);
      hidden = Tensor();
      hidden = b.mlp->forward(exec, norm(exec, residual, b.norm2_weight, b.norm2_bias));
    }
    if (b.ffn) {
      ops::add_(exec, residual, hidden);
      hidden = Tensor();
      const Tensor x2 = norm(exec, residual, b.norm2_weight, b.norm2_bias);
      hidden = timed(b.ffn->label(), [&] { return b.ffn->forward(exec, x2, st, state.position); });
      if (b.ffn_scale != 1.0f) ops::scale_(exec, hidden, b.ffn_scale);
    }
  }
  ops::add_(exec, residual, hidden);
  state.position += seq_len;
  if (num_last > 0 && num_last < seq_len)
    residual = residual.slice(1, seq_len - num_last, seq_len).contiguous();
  return head(exec, residual);
}

// The stream is R_{k+1} = R_k + f_k(norm_k(R_k)) over the sublayers k (mixers and MLPs), so
// backward adds norm_k_bwd(f_k_bwd(dR)) to dR in reverse order (§4.3). Each R_k is kept.
Tensor Model::forward_train(ops::Exec& exec, const Tensor& ids, Activations& acts) const {
  const ops::ExecScope bind(exec);  // the tensor work between ops runs on exec's stream too
  MAMBA_CHECK(ids.dim() == 2, "ids " << shape_str(ids.shape()));
  // Runs on the model's device (every op dispatches on its input). The ids go there too, so
  // that the embedding's backward finds its ids and gradients on one device.
  const Tensor on_device = ids.device() == device_ ? ids : ids.to(device_);
  return forward_train_embedded(exec, on_device, embed(exec, on_device), acts);
}

Tensor Model::forward_train_embedded(ops::Exec& exec, const Tensor& ids, const Tensor& embedded,
                                     Activations& acts) const {
  const ops::ExecScope bind(exec);
  MAMBA_CHECK(ids.dim() == 2 && ids.device() == device_ && embedded.dim() == 3 &&
                  embedded.size(0) == ids.size(0) && embedded.size(1) == ids.size(1),
              "forward_train_embedded: ids " << shape_str(ids.shape()) << ", embeddings "
                                             << shape_str(embedded.shape()));
  acts.ids = ids;
  acts.blocks.resize(blocks_.size());
  Tensor stream = embedded;  // [batch, seq_len, d_model]
  acts.emb = reads_embeddings() ? stream.copy() : Tensor();
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    BlockActivations& a = acts.blocks[i];
    a.residual = stream;
    stream = stream.copy();
    const Tensor x = b.has_norm ? norm(exec, a.residual, b.norm_weight, b.norm_bias) : a.residual;
    Tensor h = b.mixer->reads_embeddings() ? b.mixer->forward_train_emb(exec, x, acts.emb, a.mixer)
                                           : b.mixer->forward_train(exec, x, a.mixer);
    if (b.mixer_par) ops::add_(exec, h, b.mixer_par->forward_train(exec, x, a.mixer_par));
    if (b.mixer_scale != 1.0f) ops::scale_(exec, h, b.mixer_scale);
    ops::add_(exec, stream, h);
    if (b.ffn) {
      a.residual2 = stream;
      stream = stream.copy();
      Tensor f = b.ffn->forward_train(exec, norm(exec, a.residual2, b.norm2_weight, b.norm2_bias), a.ffn);
      if (b.ffn_scale != 1.0f) ops::scale_(exec, f, b.ffn_scale);
      ops::add_(exec, stream, f);
    }
    if (b.mlp) {
      a.residual2 = stream;
      stream = stream.copy();
      ops::add_(exec, stream,
                b.mlp->forward_train(exec, norm(exec, a.residual2, b.norm2_weight, b.norm2_bias), a.mlp));
    }
  }
  acts.final_residual = stream;
  acts.final_normed = norm(exec, stream, norm_f_weight, norm_f_bias);
  Tensor logits = ops::linear(exec, acts.final_normed, lm_head_weight);
  if (config_.logits_scale != 1.0) ops::scale_(exec, logits, static_cast<float>(config_.logits_scale));
  return logits;
}

void Model::backward(ops::Exec& exec, const Tensor& dlogits, const Activations& acts, Model& grads) const {
  const ops::ExecScope bind(exec);  // the tensor work between ops runs on exec's stream too
  MAMBA_CHECK(acts.blocks.size() == blocks_.size() && grads.blocks_.size() == blocks_.size());
  Tensor no_bias;  // grads.lm_head_weight is the embedding's gradient when tied
  Tensor dlogits_scaled = dlogits;
  if (config_.logits_scale != 1.0) {
    dlogits_scaled = dlogits.copy();
    ops::scale_(exec, dlogits_scaled, static_cast<float>(config_.logits_scale));
  }
  const Tensor dnormed =
      ops::linear_bwd(exec, dlogits_scaled, acts.final_normed, lm_head_weight, grads.lm_head_weight, no_bias);
  Tensor demb;  // d loss / d embeddings through the mixers that read them (Zamba2)
  Tensor dstream =
      norm_bwd(exec, dnormed, acts.final_residual, norm_f_weight, grads.norm_f_weight, grads.norm_f_bias);
  for (size_t i = blocks_.size(); i-- > 0;) {
    const Block& b = blocks_[i];
    Block& g = grads.blocks_[i];
    const BlockActivations& a = acts.blocks[i];
    if (b.mlp) {
      const Tensor dh = b.mlp->backward(exec, dstream, a.mlp, *g.mlp);
      ops::add_(exec, dstream, norm_bwd(exec, dh, a.residual2, b.norm2_weight, g.norm2_weight, g.norm2_bias));
    }
    if (b.ffn) {
      Tensor dout = dstream;
      if (b.ffn_scale != 1.0f) {
        dout = dstream.copy();
        ops::scale_(exec, dout, b.ffn_scale);
      }
      const Tensor dh = b.ffn->backward(exec, dout, *a.ffn, *g.ffn);
      ops::add_(exec, dstream, norm_bwd(exec, dh, a.residual2, b.norm2_weight, g.norm2_weight, g.norm2_bias));
    }
    Tensor dout = dstream;
    if (b.mixer_scale != 1.0f) {
      dout = dstream.copy();
      ops::scale_(exec, dout, b.mixer_scale);
    }
    Tensor dh;
    if (b.mixer->reads_embeddings()) {
      if (!demb.defined()) demb = Tensor::zeros(dstream.shape(), DType::f32, dstream.device());
      dh = b.mixer->backward_emb(exec, dout, *a.mixer, *g.mixer, demb);
    } else {
      dh = b.mixer->backward(exec, dout, *a.mixer, *g.mixer);
    }
    if (b.mixer_par) ops::add_(exec, dh, b.mixer_par->backward(exec, dout, *a.mixer_par, *g.mixer_par));
    ops::add_(exec, dstream,
              b.has_norm ? norm_bwd(exec, dh, a.residual, b.norm_weight, g.norm_weight, g.norm_bias) : dh);
  }
  if (demb.defined()) ops::add_(exec, dstream, demb);
  if (config_.embed_scale != 1.0) ops::scale_(exec, dstream, static_cast<float>(config_.embed_scale));
  const int64_t pad = config_.embedding_pad_id;
  if (pad < 0 || pad >= config_.vocab_padded) {
    ops::embedding_bwd(exec, acts.ids, dstream, grads.embedding);
    return;
  }
  // padding_idx: the lookup's gradient without the pad row (a tied head's gradient keeps it).
  Tensor lookup = Tensor::zeros(grads.embedding.shape(), DType::f32, dstream.device());
  ops::embedding_bwd(exec, acts.ids, dstream, lookup);
  Tensor pad_row = lookup.slice(0, pad, pad + 1);
  pad_row.zero();
  ops::add_(exec, grads.embedding, lookup);
}

double Model::loss_and_grads(ops::Exec& exec, const Tensor& ids, const Tensor& targets, Model& grads,
                             Activations& acts) const {
  const ops::ExecScope bind(exec);  // the tensor work between ops runs on exec's stream too
  const Tensor logits = forward_train(exec, ids, acts);
  const double loss = ops::cross_entropy_fwd(exec, logits, targets);
  backward(exec, ops::cross_entropy_bwd(exec, logits, targets), acts, grads);
  return loss;
}

Tensor next_token_targets(const Tensor& ids_in) {
  MAMBA_CHECK(ids_in.dim() == 2);
  const Tensor ids = ids_in.contiguous().to(DType::i64);
  const int64_t batch = ids.size(0), seq_len = ids.size(1);
  Tensor targets = Tensor::empty({batch, seq_len}, DType::i64);
  const int64_t* src = ids.data<int64_t>();
  int64_t* dst = targets.data<int64_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq_len; ++t)
      dst[b * seq_len + t] = t + 1 < seq_len ? src[b * seq_len + t + 1] : -1;
  return targets;
}

Tensor Model::step(ops::Exec& exec, const Tensor& ids, State& state) const {
  const ops::ExecScope bind(exec);  // the tensor work between ops runs on exec's stream too
  MAMBA_CHECK(ids.dim() == 1 && ids.size(0) == state.batch);
  return step_embedded(exec, embed(exec, ids), state);
}

// One token through a family's blocks: the whole-sequence pass on length-1 views (every op takes
// its one-token path there), with the pending-output and fused-norm structure of step_embedded.
Tensor Model::step_family(ops::Exec& exec, Tensor residual, State& state) const {
  const int64_t batch = residual.size(0), D = residual.size(1);
  const Tensor emb = reads_embeddings() ? residual.copy().view({batch, 1, D}) : Tensor();
  residual = residual.view({batch, 1, D});
  const float eps = static_cast<float>(config_.norm_eps);
  Tensor hidden;
  auto add_norm = [&](const Tensor& w) {
    const Tensor normed = ops::add_rms_norm_(exec, residual, hidden, w, eps);
    hidden = Tensor();
    return normed;
  };
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    LayerState& st = state.layers[i];
    Tensor x;
    if (b.has_norm) {
      x = add_norm(b.norm_weight);
    } else {
      if (hidden.defined()) ops::add_(exec, residual, hidden);
      hidden = Tensor();
      x = residual;
    }
    hidden = timed(b.mixer->label(), [&] {
      return b.mixer->reads_embeddings() ? b.mixer->forward_emb(exec, x, emb, st, state.position)
                                         : b.mixer->forward(exec, x, st, state.position);
    });
    if (b.mixer_par)
      ops::add_(exec, hidden, timed(b.mixer_par->label(), [&] {
                  return b.mixer_par->forward(exec, x, st, state.position);
                }));
    if (b.mixer_scale != 1.0f) ops::scale_(exec, hidden, b.mixer_scale);
    if (b.ffn) {
      const Tensor normed = add_norm(b.norm2_weight);
      hidden = timed(b.ffn->label(), [&] { return b.ffn->forward(exec, normed, st, state.position); });
      if (b.ffn_scale != 1.0f) ops::scale_(exec, hidden, b.ffn_scale);
    }
  }
  state.position += 1;
  Tensor logits = ops::linear(exec, add_norm(norm_f_weight), lm_head_weight).view({batch, -1});
  if (config_.logits_scale != 1.0) ops::scale_(exec, logits, static_cast<float>(config_.logits_scale));
  return logits;
}

// Decode keeps each sublayer's output pending and adds it into the residual inside the next
// norm's kernel (ops::add_rms_norm_); in an RMSNorm model each mixer takes the stream itself
// (Mixer::step_residual), and the ops it calls choose whether to normalize and add within its
// projections instead (ops::decode_in_proj). Same values as Model::forward's walk.
Tensor Model::step_embedded(ops::Exec& exec, Tensor residual, State& state) const {
  MAMBA_CHECK(residual.dim() == 2 && residual.size(0) == state.batch);
  if (!config_.family.empty()) return step_family(exec, residual, state);
  const float eps = static_cast<float>(config_.norm_eps);
  const bool rms = config_.rms_norm;
  Tensor hidden;  // [batch, d_model] the last sublayer's output, not yet in the residual
  auto add_norm = [&](const Tensor& w, const Tensor& b) {
    const Tensor normed = rms ? ops::add_rms_norm_(exec, residual, hidden, w, eps)
                              : ops::add_layer_norm_(exec, residual, hidden, w, b, eps);
    hidden = Tensor();
    return normed;
  };
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    if (rms) {
      hidden =
          b.mixer->step_residual(exec, residual, hidden, b.norm_weight, eps, state.layers[i], state.position);
    } else {
      const Tensor normed = add_norm(b.norm_weight, b.norm_bias);
      hidden = b.mixer->step(exec, normed, state.layers[i], state.position);
    }
    if (b.mlp) {
      const Tensor normed = add_norm(b.norm2_weight, b.norm2_bias);
      hidden = b.mlp->forward(exec, normed);
    }
  }
  state.position += 1;
  // RMSNorm: the op may run norm_f inside the head's GEMV (ops::add_rms_norm_linear chooses).
  if (rms) return ops::add_rms_norm_linear(exec, residual, hidden, norm_f_weight, eps, lm_head_weight);
  return ops::linear(exec, add_norm(norm_f_weight, norm_f_bias), lm_head_weight);
}

}  // namespace mamba::models
