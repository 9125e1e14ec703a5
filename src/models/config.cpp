// ModelConfig: the shared fields (io/model_config) and, per architecture, its ArchSpec's section.
#include "models/config.h"

#include <utility>

#include "core/error.h"
#include "core/file_util.h"
#include "models/architectures.h"

namespace mamba::models {

using nlohmann::json;

namespace {

bool has_ssm_layers(const ModelConfig& c) {
  return static_cast<int64_t>(c.attn_layer_idx.size()) < c.n_layer;
}

const ArchSpec* find_section(const char* section, const std::string& name) {
  for (const ArchSpec* a : architectures())
    if (std::string(a->section) == section && (name.empty() || name == a->name)) return a;
  return nullptr;
}

// "Mamba1, Mamba2 or Mamba3": the names ssm_cfg.layer accepts.
std::string ssm_layer_names() {
  std::vector<std::string> names;
  for (const ArchSpec* a : architectures())
    if (std::string(a->section) == "ssm_cfg") names.push_back(a->name);
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return out;
}

}  // namespace

const char* mixer_kind_name(MixerKind kind) {
  if (kind == MixerKind::mlp) return "MLP";
  if (kind == MixerKind::moe) return "MoE";
  return arch_spec(kind).name;
}

void finalize_model_config(ModelConfig& c, const std::string& src) {
  io::finalize_lm_config(c, src);
  for (const ArchSpec* a : architectures())
    if (a->check) a->check(c, src);
  if (has_ssm_layers(c)) arch_spec(c.ssm_layer).finalize(c, src);
  if (!c.attn_layer_idx.empty())
    if (const ArchSpec* attn = find_section("attn_cfg", "")) attn->finalize(c, src);
}

ModelConfig parse_model_config(const json& j, const std::string& source) {
  if (!j.is_object())
    throw_error(ErrorCode::parse, source, ": expected a JSON object, found ", j.type_name());
  const io::Reader r{j, source, ""};
  ModelConfig c;
  if (j.contains("model_type")) {
    const std::string type = r.string("model_type", "");
    const ArchSpec* arch = nullptr;
    for (const ArchSpec* a : architectures())
      for (const std::string& t : a->hf_model_types)
        if (t == type && a->parse_hf) arch = a;
    c.format = io::CheckpointFormat::hf;
    if (!arch) {
      // A hybrid family: models/families/ validates it (Model::load) and fills the shared fields.
      c.family = type;
      c.family_json = j;
      return c;
    }
    io::parse_lm_config(r, c);
    c.ssm_layer = kind_of(*arch);
    arch->parse_hf(r, type, c);
  } else {
    io::parse_lm_config(r, c);
    const io::Reader ssm = r.child("ssm_cfg");
    const std::string layer = ssm.string("layer", "Mamba1");
    const ArchSpec* arch = find_section("ssm_cfg", layer);
    if (!arch)
      throw_error(ErrorCode::unsupported, r.source, ": field 'ssm_cfg.layer' expected ", ssm_layer_names(),
                  ", found '", layer, "'");
    c.ssm_layer = kind_of(*arch);
    arch->parse(ssm, c);
    for (const ArchSpec* a : architectures())
      if (std::string(a->section) != "ssm_cfg") a->parse(r.child(a->section), c);
  }
  finalize_model_config(c, source);
  return c;
}

ModelConfig load_model_config(const std::string& model_dir) {
  return parse_model_config(io::read_config_json(model_dir), path_join(model_dir, "config.json"));
}

json to_mamba_ssm_json(const ModelConfig& c) {
  json j = io::lm_to_mamba_ssm_json(c);
  j["ssm_cfg"] = arch_spec(c.ssm_layer).to_json(c);
  j["attn_cfg"] = json::object();
  if (!c.attn_layer_idx.empty())
    if (const ArchSpec* attn = find_section("attn_cfg", "")) j["attn_cfg"] = attn->to_json(c);
  return j;
}

bool bench_model_config(const std::string& name, int64_t d_model, int64_t n_layer, int64_t d_intermediate,
                        ModelConfig& out) {
  for (const ArchSpec* a : architectures())
    for (const std::string& n : a->bench_names)
      if (n == name) {
        ModelConfig c;
        c.d_model = d_model;
        c.n_layer = n_layer;
        c.vocab_size = 50277;
        c.pad_vocab_size_multiple = 8;
        c.d_intermediate = d_intermediate;
        if (std::string(a->section) == "ssm_cfg") c.ssm_layer = kind_of(*a);
        a->bench_shapes(name, c);
        finalize_model_config(c, "bench:" + name);
        out = c;
        return true;
      }
  return false;
}

std::vector<std::string> bench_model_names() {
  std::vector<std::string> names;
  for (const ArchSpec* a : architectures())
    names.insert(names.end(), a->bench_names.begin(), a->bench_names.end());
  return names;
}

}  // namespace mamba::models
