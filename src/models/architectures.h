// Factories of the architecture files (one per file), used by the registry only.
#pragma once
#include <memory>
#include <vector>

#include "models/mixer.h"

namespace mamba::models {

std::unique_ptr<Mixer> make_mamba1(const io::ModelConfig& config, int64_t layer);
std::unique_ptr<Mixer> make_mamba2(const io::ModelConfig& config, int64_t layer);
std::unique_ptr<Mixer> make_mamba3(const io::ModelConfig& config, int64_t layer);
std::unique_ptr<Mixer> make_attention(const io::ModelConfig& config, int64_t layer);

// `state` with every tensor moved to `device` (forward_train starts from a fresh state on the
// input's device; new_state allocates on the host).
inline LayerState state_on(LayerState state, Device device) {
  if (device != Device::cpu) state.visit([&](const char*, Tensor& t) { t = t.to(device); });
  return state;
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
