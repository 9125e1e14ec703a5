// The architectures. Adding one = its file under models/ (the mixer and its ArchSpec, named
// <name>_arch) + its schema in config.h + its X(name) in the line below + fixtures.
#include "core/error.h"
#include "models/architectures.h"

#define MAMBACPP_ARCHITECTURES(X) X(mamba1) X(mamba2) X(mamba3) X(attention)

namespace mamba::models {

#define MAMBACPP_DECLARE(name) extern const ArchSpec name##_arch;
MAMBACPP_ARCHITECTURES(MAMBACPP_DECLARE)
#undef MAMBACPP_DECLARE

const std::vector<const ArchSpec*>& architectures() {
#define MAMBACPP_ENTRY(name) &name##_arch,
  static const std::vector<const ArchSpec*> all = {MAMBACPP_ARCHITECTURES(MAMBACPP_ENTRY)};
#undef MAMBACPP_ENTRY
  return all;
}

const ArchSpec& arch_spec(MixerKind kind) {
  for (const ArchSpec* a : architectures())
    if (a->kind == kind) return *a;
  MAMBA_CHECK(false, "no architecture registered for mixer kind " << static_cast<int>(kind));
  return *architectures().front();
}

std::unique_ptr<Mixer> make_mixer(MixerKind kind, const ModelConfig& config, int64_t layer) {
  // mlp / moe are built by a family (models/families/), never from a kind alone.
  return arch_spec(kind).make_mixer(config, layer);
}

}  // namespace mamba::models
