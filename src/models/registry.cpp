// Mixer registry: adding an architecture = its file + one line here + fixtures.
#include "core/error.h"
#include "models/architectures.h"

namespace mamba::models {

std::unique_ptr<Mixer> make_mixer(io::MixerKind kind, const io::ModelConfig& config, int64_t layer) {
  switch (kind) {
    case io::MixerKind::mamba1:
      return make_mamba1(config, layer);
    case io::MixerKind::mamba2:
      return make_mamba2(config, layer);
    case io::MixerKind::mamba3:
      return make_mamba3(config, layer);
    case io::MixerKind::attention:
      return make_attention(config, layer);
    case io::MixerKind::mlp:
    case io::MixerKind::moe:
      break;  // built by a family (models/families/), never from a kind alone
  }
  MAMBA_CHECK(false, "unknown mixer kind");
  return nullptr;
}

}  // namespace mamba::models
