// What an architecture is, in one struct, defined in one file next to its mixer: its config
// schema (its own struct, in its header, stored as ModelConfig::section<T>() and parsed, derived,
// validated and written by the hooks below), its parameters with their initialisation rules
// (Mixer::visit_params, ParamRef::init), its in_proj layout (Mamba-3's: ops/mamba3_gates/
// mamba3_layout.h), its mixer factory and its bench shapes.
//
// Adding one in-tree: a file under models/ with its schema struct (in a header where others, such
// as a family, read it) and `extern const ArchSpec <name>_arch = {...}` at the start of a line;
// the build lists it (models/list_architectures.cmake, registry.cpp) and hands it a MixerKind.
// Out of tree (a user's own mixer): the same ArchSpec in the program, passed to
// register_architecture before any config naming it is parsed. Nothing else is edited either way.
#pragma once
#include <cmath>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/config_reader.h"
#include "models/mixer.h"

namespace mamba::models {

struct ArchSpec {
  // The built-ins' fixed kind (MixerKind::mamba2, ...); left unset, the registry hands one out
  // (kind_of). Registry order: the built-ins by kind, then the in-tree others by file name, then
  // those registered at run time.
  MixerKind kind = {};
  const char* name;  // ssm_cfg.layer of a state-spaces config ("Mamba3"); "MHA" for attention
  // Which section of a state-spaces config.json it reads: "ssm_cfg" (the SSM mixer of the layers
  // not in attn_layer_idx, picked by ssm_cfg.layer) or "attn_cfg" (the layers in attn_layer_idx).
  const char* section;
  void (*parse)(const io::Reader& section, ModelConfig& c);
  // HF transformers checkpoints whose model_type this architecture reads (from the whole
  // config.json, after the shared fields); empty = none.
  std::vector<std::string> hf_model_types = {};
  void (*parse_hf)(const io::Reader& root, const std::string& model_type, ModelConfig& c) = nullptr;
  // Bounds on its section's sizes, checked for every architecture whether or not a layer uses it
  // (an attn_cfg is parsed even without attention layers); an unused section holds its defaults.
  void (*check)(const ModelConfig& c, const std::string& source) = nullptr;
  // Derived dimensions and validation (one-line errors naming the key), when a layer uses it.
  void (*finalize)(ModelConfig& c, const std::string& source);
  // Its section of a state-spaces config.json.
  nlohmann::json (*to_json)(const ModelConfig& c);
  std::unique_ptr<Mixer> (*make_mixer)(const ModelConfig& c, int64_t layer);
  // `mambacpp bench` models of this architecture, and their shapes: the shared fields and
  // ssm_layer (this architecture's kind) are set before the call.
  std::vector<std::string> bench_names = {};
  void (*bench_shapes)(const std::string& name, ModelConfig& c) = nullptr;
};

// Every registered architecture, in registry order, and one by kind.
const std::vector<const ArchSpec*>& architectures();
const ArchSpec& arch_spec(MixerKind kind);
// The kind the registry gave `spec` (its own if it set one); Error if it is not registered.
MixerKind kind_of(const ArchSpec& spec);
// Adds an architecture defined outside src/models (it must outlive every use: a static), returns
// its kind. Call it before configs are parsed or models built on other threads (the registry is
// not locked). Error if its name is taken in its section or a required hook is missing.
MixerKind register_architecture(const ArchSpec& spec);

// Sizes of a section no larger than io::kMaxDim (ArchSpec::check): {"ssm_cfg.d_state", m.d_state}, ...
inline void require_sizes(const std::string& source,
                          std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  for (const auto& [name, v] : sizes) io::require_at_most(source, name, v, io::kMaxDim);
}

// The depthwise conv's initialisation (nn.Conv1d's default, fan_in = d_conv). The bias bound
// takes fan_in 4 whatever d_conv is, as mambacpp always has (kept so random models do not change).
inline Init conv_weight_init(int64_t d_conv) {
  return Init::uniform(1.0f / std::sqrt(static_cast<float>(d_conv)));
}
inline Init conv_bias_init() {
  return Init::uniform(1.0f / std::sqrt(4.0f));
}

// A fresh (all-zero) state on `device` shaped as `state` (new_state's, built on the host):
// forward_train starts from it. On a device the zeros are written there (no host buffer is copied
// over), so a training step can be captured in a CUDA graph.
inline LayerState state_on(LayerState state, Device device) {
  if (device != Device::cpu)
    state.visit([&](const char*, Tensor& t) { t = Tensor::zeros(t.shape(), t.dtype(), device); });
  return state;
}

// Sets a constant derived from parameters (Mixer::prepare): into the tensor `dst` already holds
// when it has the value's shape, dtype and device, else by rebinding. In place after the first
// call, so work recorded in a CUDA graph (a captured training step) keeps reading the current
// values after an optimizer step re-derives them.
inline void assign_derived(Tensor& dst, const Tensor& value) {
  if (dst.defined() && dst.shape() == value.shape() && dst.dtype() == value.dtype() &&
      dst.device() == value.device() && dst.is_contiguous() && dst.raw() != value.raw())
    dst.copy_from(value);
  else
    dst = value;
}

// Writes k, v [batch, seq_len, n_kv_heads, head_dim] into the state's KV cache at positions
// [pos, pos + seq_len), growing it geometrically (attention.cpp, attention_hf.cpp).
void append_kv(LayerState& st, const Tensor& k, const Tensor& v, int64_t pos);

// Rows of `parts` stacked into one tensor (a fused projection weight); and the inverse for
// gradients: dst += rows [at, at + dst.size(0)) of src (attention_hf.cpp).
Tensor stack_rows(const std::vector<const Tensor*>& parts);
void add_rows(ops::Exec& exec, Tensor& dst, const Tensor& src, int64_t at);

// Columns [start, start + len) of the last dim (a strided view).
inline Tensor columns(const Tensor& t, int64_t start, int64_t len) {
  return t.slice(-1, start, start + len);
}

}  // namespace mamba::models
