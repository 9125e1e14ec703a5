// Factories of the architecture files (one per file), used by the registry only.
#pragma once
#include <memory>

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

// Columns [start, start + len) of the last dim (a strided view).
inline Tensor columns(const Tensor& t, int64_t start, int64_t len) {
  return t.slice(-1, start, start + len);
}

}  // namespace mamba::models
