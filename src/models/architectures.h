// What an architecture is, in one struct: each architecture file (mamba1.cpp, mamba2.cpp,
// mamba3.cpp, attention.cpp) defines one ArchSpec next to its mixer, and registry.cpp lists them in
// one line. Its config schema (the data) is in models/config.h; its parameters carry their
// initialisation rules (ParamRef::init); Mamba-3's in_proj layout is ops/mamba3_gates/mamba3_layout.h.
#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "io/config_reader.h"
#include "models/mixer.h"

namespace mamba::models {

struct ArchSpec {
  MixerKind kind;
  const char* name;  // ssm_cfg.layer of a state-spaces config ("Mamba3"); "MHA" for attention
  // Which section of a state-spaces config.json it reads: "ssm_cfg" (the SSM mixer of the layers
  // not in attn_layer_idx, picked by ssm_cfg.layer) or "attn_cfg" (the layers in attn_layer_idx).
  const char* section;
  void (*parse)(const io::Reader& section, ModelConfig& c);
  // HF transformers checkpoints whose model_type this architecture reads (from the whole
  // config.json, after the shared fields); empty = none.
  std::vector<std::string> hf_model_types;
  void (*parse_hf)(const io::Reader& root, const std::string& model_type, ModelConfig& c);
  // Derived dimensions and validation (one-line errors naming the key).
  void (*finalize)(ModelConfig& c, const std::string& source);
  // Its section of a state-spaces config.json.
  nlohmann::json (*to_json)(const ModelConfig& c);
  std::unique_ptr<Mixer> (*make_mixer)(const ModelConfig& c, int64_t layer);
  // `mambacpp bench` models of this architecture, and their shapes (the shared fields are set).
  std::vector<std::string> bench_names;
  void (*bench_shapes)(const std::string& name, ModelConfig& c);
};

// Every registered architecture, in registry order (registry.cpp), and one by kind.
const std::vector<const ArchSpec*>& architectures();
const ArchSpec& arch_spec(MixerKind kind);

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
