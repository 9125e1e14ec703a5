// Mixer registry: adding an architecture = its file + one line here + fixtures. Also the
// helpers the architecture files share.
#include <cmath>

#include "core/error.h"
#include "models/architectures.h"

namespace mamba::models {

Tensor neg_exp(const Tensor& A_log) {
  const Tensor a_log = A_log.to(Device::cpu);
  Tensor A = Tensor::empty(A_log.shape());
  for (int64_t i = 0; i < A.numel(); ++i) A.f32()[i] = -std::exp(a_log.f32()[i]);
  return A.to(A_log.device());
}

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
  }
  MAMBA_CHECK(false, "unknown mixer kind");
  return nullptr;
}

}  // namespace mamba::models
