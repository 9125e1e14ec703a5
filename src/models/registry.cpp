// The architectures: the in-tree ones, listed at build time from the files that define an ArchSpec
// (architecture_list.inc, written by models/list_architectures.cmake), and those a program adds
// with register_architecture. Adding one in-tree = its file under models/ (its schema, mixer and
// `extern const ArchSpec <name>_arch`) + fixtures; no list, enum or config member is edited.
//
// Why a generated list and not self-registering static objects: an object file of a static
// library that nothing references is left out by the linker, so its registrar would silently never
// run, and registrars of different files run in no specified order. The list names every ArchSpec,
// so each file is linked; the registry is built on first use (after static initialization: do not
// parse a config from a static initializer) and its order is fixed below, whatever the file order.
#include <algorithm>
#include <string>

#include "core/error.h"
#include "models/architectures.h"

namespace mamba::models {

#define MAMBACPP_ARCHITECTURE(name) extern const ArchSpec name##_arch;
#include "architecture_list.inc"
#undef MAMBACPP_ARCHITECTURE

namespace {

struct Registry {
  std::vector<const ArchSpec*> specs;
  std::vector<MixerKind> kinds;  // kinds[i]: specs[i]'s
  int next_id = MixerKind::first_free_id;

  const ArchSpec* find(MixerKind kind) const {
    for (size_t i = 0; i < kinds.size(); ++i)
      if (kinds[i] == kind) return specs[i];
    return nullptr;
  }

  // A program's mistakes (a name taken, a hook missing) are Errors, not aborts: a user's
  // architecture goes through here too.
  MixerKind add(const ArchSpec& spec) {
    for (const ArchSpec* a : specs)
      if (a == &spec || (std::string(a->section) == spec.section && std::string(a->name) == spec.name))
        throw_error(ErrorCode::invalid_argument, "architecture ", spec.name, " (", spec.section,
                    ") is already registered");
    if (!spec.parse || !spec.finalize || !spec.to_json || !spec.make_mixer)
      throw_error(ErrorCode::invalid_argument, "architecture ", spec.name,
                  ": parse, finalize, to_json and make_mixer are required");
    MixerKind kind = spec.kind;
    if (kind == MixerKind{}) kind = MixerKind(next_id++);
    if (find(kind) || kind == MixerKind::mlp || kind == MixerKind::moe)
      throw_error(ErrorCode::invalid_argument, "architecture ", spec.name, ": mixer kind ", kind.id(),
                  " is taken (leave ArchSpec::kind unset to be given one)");
    specs.push_back(&spec);
    kinds.push_back(kind);
    return kind;
  }
};

Registry& registry() {
  static Registry r = [] {
  // Today's order first (bench_model_names, the `ssm_cfg.layer` list in errors): the built-ins
  // by their fixed kinds (mamba1, mamba2, mamba3, attention), then the others by file name.
#define MAMBACPP_ARCHITECTURE(name) &name##_arch,
    std::vector<const ArchSpec*> in_tree = {
#include "architecture_list.inc"
    };
#undef MAMBACPP_ARCHITECTURE
    std::stable_sort(in_tree.begin(), in_tree.end(), [](const ArchSpec* a, const ArchSpec* b) {
      const auto key = [](const ArchSpec* s) {
        return s->kind == MixerKind{} ? MixerKind::first_free_id : s->kind.id();
      };
      return key(a) < key(b);
    });
    Registry out;
    for (const ArchSpec* a : in_tree) out.add(*a);
    return out;
  }();
  return r;
}

}  // namespace

const std::vector<const ArchSpec*>& architectures() {
  return registry().specs;
}

MixerKind register_architecture(const ArchSpec& spec) {
  return registry().add(spec);
}

MixerKind kind_of(const ArchSpec& spec) {
  const Registry& r = registry();
  for (size_t i = 0; i < r.specs.size(); ++i)
    if (r.specs[i] == &spec) return r.kinds[i];
  throw_error(ErrorCode::invalid_argument, "architecture ", spec.name, " is not registered");
}

const ArchSpec& arch_spec(MixerKind kind) {
  const ArchSpec* a = registry().find(kind);
  MAMBA_CHECK(a, "no architecture registered for mixer kind " << kind.id());
  return *a;
}

std::unique_ptr<Mixer> make_mixer(MixerKind kind, const ModelConfig& config, int64_t layer) {
  // mlp / moe are built by a family (models/families/), never from a kind alone.
  return arch_spec(kind).make_mixer(config, layer);
}

}  // namespace mamba::models
