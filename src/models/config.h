// A model's configuration: the shared fields (io::LmConfig), the kind of the SSM layers and one
// section per architecture, stored by type (ModelConfig::section). No architecture's schema is
// here: each is in its own header (models/<arch>.h), and its file (models/<arch>.cpp, its ArchSpec)
// parses, derives, validates and writes it; config.cpp only dispatches to the registered ArchSpecs.
#pragma once
#include <any>
#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/model_config.h"

namespace mamba::models {

// Which mixer a layer runs: a small id, open to architectures this file does not know. The
// built-ins are constants (MixerKind::mamba2; mlp / moe are the families' FFN sublayers as
// stateless mixers, never an ssm_layer); an architecture added by its file alone is handed its id
// by the registry (kind_of, models/architectures.h), so adding one edits nothing here.
class MixerKind {
public:
  constexpr MixerKind() = default;  // none
  constexpr explicit MixerKind(int id) : id_(id) {}
  constexpr int id() const { return id_; }
  friend constexpr bool operator==(MixerKind, MixerKind) = default;

  static const MixerKind mamba1, mamba2, mamba3, attention, mlp, moe;
  static constexpr int first_free_id = 6;  // the registry hands out ids from here

private:
  int id_ = -1;
};
inline constexpr MixerKind MixerKind::mamba1{0};
inline constexpr MixerKind MixerKind::mamba2{1};
inline constexpr MixerKind MixerKind::mamba3{2};
inline constexpr MixerKind MixerKind::attention{3};
inline constexpr MixerKind MixerKind::mlp{4};
inline constexpr MixerKind MixerKind::moe{5};

// "Mamba1", "MHA", "MoE", ...: the architecture's name (ssm_cfg.layer for the SSM mixers).
const char* mixer_kind_name(MixerKind kind);

struct ModelConfig : io::LmConfig {
  MixerKind ssm_layer = MixerKind::mamba1;  // the mixer of every layer not in attn_layer_idx

  MixerKind layer_kind(int64_t layer) const {
    return layer_has_attention(layer) ? MixerKind::attention : ssm_layer;
  }

  // An architecture's section (its schema struct, declared in its own header: models/mamba2.h's
  // Mamba2Config, ...): one slot per type, so a new architecture's schema needs no member here.
  // A slot never written reads as the struct's defaults; the non-const access creates it (write
  // while parsing or building a config, before the config is shared across threads). References
  // stay valid as other slots are added (a deque). Mixers copy their section when built, so no
  // lookup runs per token.
  template <typename T>
  T& section() {
    for (std::any& s : sections_)
      if (T* t = std::any_cast<T>(&s)) return *t;
    return std::any_cast<T&>(sections_.emplace_back(T{}));
  }
  template <typename T>
  const T& section() const {
    for (const std::any& s : sections_)
      if (const T* t = std::any_cast<T>(&s)) return *t;
    static const T defaults{};
    return defaults;
  }

private:
  std::deque<std::any> sections_;
};

// Parses and validates; `source` names the file in error messages ("DIR/config.json").
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
ModelConfig load_model_config(const std::string& model_dir);
// Fills the derived fields and checks consistency (d_inner divisible by head_dim, ...).
void finalize_model_config(ModelConfig& c, const std::string& source);
// The state-spaces/mamba config.json of this model (what training checkpoints write).
nlohmann::json to_mamba_ssm_json(const ModelConfig& c);

// `mambacpp bench`'s shapes of an architecture ("mamba1", "mamba3-mimo", "hybrid", ...) at the
// given width, finalized; nullopt-like: returns false for a name no architecture knows.
bool bench_model_config(const std::string& name, int64_t d_model, int64_t n_layer, int64_t d_intermediate,
                        ModelConfig& out);
// The names bench_model_config knows, in registry order.
std::vector<std::string> bench_model_names();

}  // namespace mamba::models
