// `mambacpp info --model DIR`: architecture, layer kinds, the dimensions of each mixer kind,
// parameters, the stored weight dtype, the tokenizer, state bytes. DIR may be a training checkpoint ROOT (its
// latest step), as for `eval`.
#include <mambacpp/mambacpp.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "commands.h"

namespace mambacpp::cli {

namespace {

const char* rope_mode_name(RopeMode m) {
  switch (m) {
    case RopeMode::data_dependent:
      return "data_dependent";
    case RopeMode::none:
      return "none";
    case RopeMode::data_independent:
      return "data_independent";
  }
  return "?";
}

// One line per SSM / attention kind present, for the layouts configured here (a family's mixers
// read their own fields from its config.json, which info does not interpret).
void print_mixer_dims(const ModelConfig& c, const std::set<std::string>& kinds) {
  auto has = [&](const char* prefix) {
    for (const std::string& k : kinds)
      if (k.rfind(prefix, 0) == 0) return true;
    return false;
  };
  if (has("Mamba1")) {
    const auto& m = c.section<Mamba1Config>();
    std::printf("mamba1:       d_state %lld, expand %g (d_inner %lld), d_conv %lld, dt_rank %lld\n",
                static_cast<long long>(m.d_state), m.expand, static_cast<long long>(m.d_inner),
                static_cast<long long>(m.d_conv), static_cast<long long>(m.dt_rank));
  }
  if (has("Mamba2")) {
    const auto& m = c.section<Mamba2Config>();
    std::printf(
        "mamba2:       d_state %lld, head_dim %lld, heads %lld, n_groups %lld, expand %g (d_inner %lld), "
        "d_conv "
        "%lld, chunk %lld\n",
        static_cast<long long>(m.d_state), static_cast<long long>(m.head_dim),
        static_cast<long long>(m.n_heads), static_cast<long long>(m.n_groups), m.expand,
        static_cast<long long>(m.d_inner), static_cast<long long>(m.d_conv),
        static_cast<long long>(m.chunk_size));
  }
  if (has("Mamba3")) {
    const auto& m = c.section<Mamba3Config>();
    std::printf(
        "mamba3:       d_state %lld, head_dim %lld, heads %lld, n_groups %lld, expand %g (d_inner %lld), %s, "
        "rope %s, chunk %lld\n",
        static_cast<long long>(m.d_state), static_cast<long long>(m.head_dim),
        static_cast<long long>(m.n_heads), static_cast<long long>(m.n_groups), m.expand,
        static_cast<long long>(m.d_inner),
        m.is_mimo ? ("MIMO rank " + std::to_string(m.mimo_rank)).c_str() : "SISO (rank 1)",
        rope_mode_name(m.rope_mode), static_cast<long long>(m.chunk_size));
  }
  if (!c.attn_layer_idx.empty()) {
    const auto& a = c.section<AttentionConfig>();
    std::printf("attention:    heads %lld, kv heads %lld, head_dim %lld, rotary dims %lld\n",
                static_cast<long long>(a.num_heads), static_cast<long long>(a.num_heads_kv),
                static_cast<long long>(a.head_dim), static_cast<long long>(a.rotary_emb_dim));
  }
}

// A family's dimensions as its config.json names them (the first key present of each list).
void print_family_dims(const nlohmann::json& j) {
  struct Field {
    const char* label;
    std::vector<const char*> keys;
  };
  auto first = [&](const std::vector<const char*>& keys) -> const nlohmann::json* {
    for (const char* k : keys)
      if (j.contains(k) && j.at(k).is_number()) return &j.at(k);
    return nullptr;
  };
  // With heads given, d_inner is heads x head_dim (some configs carry a stale `expand`).
  const std::vector<const char*> heads_keys = {"mamba_num_heads", "mamba_n_heads", "n_mamba_heads"},
                                 head_dim_keys = {"mamba_head_dim", "mamba_d_head", "mamba_headdim"};
  const nlohmann::json *heads = first(heads_keys), *head_dim = first(head_dim_keys);
  auto line = [&](const char* title, const std::vector<Field>& fields, const std::string& extra = "") {
    std::string s;
    for (const Field& f : fields)
      for (const char* k : f.keys)
        if (j.contains(k) && j.at(k).is_number()) {
          s += (s.empty() ? "" : ", ") + std::string(f.label) + " " + j.at(k).dump();
          break;
        }
    if (!extra.empty()) s += (s.empty() ? "" : ", ") + extra;
    if (!s.empty()) std::printf("%-14s%s\n", title, s.c_str());
  };
  std::string d_inner;
  if (heads && head_dim && heads->is_number_integer() && head_dim->is_number_integer())
    d_inner = "d_inner " + std::to_string(heads->get<int64_t>() * head_dim->get<int64_t>());
  std::vector<Field> mamba = {{"d_state", {"ssm_state_size", "mamba_d_state", "state_size"}},
                              {"head_dim", head_dim_keys},
                              {"heads", heads_keys},
                              {"n_groups", {"n_groups", "mamba_n_groups", "mamba_ngroups"}}};
  if (d_inner.empty()) mamba.push_back({"expand", {"mamba_expand", "expand"}});
  for (const Field& f : std::vector<Field>{{"d_ssm", {"mamba_d_ssm"}},
                                           {"dt_rank", {"mamba_dt_rank"}},
                                           {"d_conv", {"mamba_d_conv", "conv_kernel"}},
                                           {"chunk", {"mamba_chunk_size", "chunk_size"}}})
    mamba.push_back(f);
  line("mamba:", mamba, d_inner);
  line("attention:", {{"heads", {"num_attention_heads"}},
                      {"kv heads", {"num_key_value_heads"}},
                      {"head_dim", {"attention_head_dim", "head_dim"}}});
  line("mlp / moe:", {{"intermediate", {"intermediate_size"}},
                      {"experts", {"n_routed_experts", "num_local_experts", "num_experts"}},
                      {"per token", {"num_experts_per_tok"}},
                      {"expert width", {"moe_intermediate_size"}}});
}

// The stored dtypes of the weights file(s): "BF16 (412 tensors)" or "F32 10, BF16 402 tensors".
std::string stored_dtypes(const std::string& dir) {
  std::map<std::string, int64_t> count;
  if (dir.ends_with(".gguf")) {  // a GGUF's types as llama.cpp names them
    const GgufFile g = GgufFile::open(dir);
    for (const GgufTensorInfo& t : g.tensors()) ++count[dtype_name(t.dtype)];
  } else {
    const auto st = SafeTensors::open(dir);
    for (const std::string& name : st.names()) ++count[st.find(name)->stored_dtype];
  }
  std::string s;
  for (const auto& [dtype, n] : count) s += (s.empty() ? "" : ", ") + dtype + " " + std::to_string(n);
  if (count.size() == 1)
    return count.begin()->first + " (" + std::to_string(count.begin()->second) + " tensors)";
  return s + " tensors";
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto model_arg = std::make_shared<std::string>();
  app.add_option(
         "-m,--model", *model_arg,
         "model directory (config.json + weights), a .gguf, or a training checkpoint ROOT (its latest step)")
      ->required();
  return [model_arg]() {
    const std::string dir = train::resolve_model_dir(*model_arg);
    const std::string* model_dir = &dir;
    // From the file's mapping: info reads the sizes and the header, not every weight.
    const Model model = Model::load(dir, {.gguf_mapped = true});
    const ModelConfig& c = model.config();
    std::printf("model:        %s\n", model_dir->c_str());
    std::printf("format:       %s%s\n",
                dir.ends_with(".gguf")             ? "GGUF (llama.cpp)"
                : c.format == CheckpointFormat::hf ? "HF transformers"
                                                   : "state-spaces/mamba",
                c.family.empty() ? "" : (" (" + c.family + ")").c_str());
    std::printf("d_model:      %lld\n", static_cast<long long>(c.d_model));
    std::printf("n_layer:      %lld\n", static_cast<long long>(c.n_layer));
    std::printf("vocab:        %lld (padded to %lld)\n", static_cast<long long>(c.vocab_size),
                static_cast<long long>(c.vocab_padded));
    std::printf("norm:         %s, eps %g\n", c.rms_norm ? "RMSNorm" : "LayerNorm", c.norm_eps);
    if (c.family.empty())
      std::printf("mlp:          %s\n",
                  c.d_intermediate > 0 ? ("gated, hidden " + std::to_string(c.mlp_hidden)).c_str() : "none");
    std::printf("tied head:    %s\n", c.tie_embeddings ? "yes" : "no");
    std::printf("layers:      ");
    int64_t fixed = 0, per_token = 0;
    std::set<std::string> kinds;
    for (const auto& b : model.blocks()) {  // e.g. "Mamba2", "Attn(NoPE)+MoE", "Mamba2|Attn(RoPE)+MLP"
      std::string layer = b.mixer->label();
      if (b.mixer_par) layer += "|" + b.mixer_par->label();
      if (b.ffn) layer += "+" + b.ffn->label();
      if (b.mlp) layer += "+MLP";
      std::printf(" %s", layer.c_str());
      kinds.insert(b.mixer->label());
      if (b.mixer_par) kinds.insert(b.mixer_par->label());
      for (const auto* m : {b.mixer.get(), b.mixer_par.get()})
        if (m) {
          fixed += m->state_bytes_fixed();
          per_token += m->state_bytes_per_token();
        }
    }
    std::printf("\n");
    if (c.family.empty())
      print_mixer_dims(c, kinds);
    else
      print_family_dims(c.family_json);
    std::printf("weights:      %s\n", stored_dtypes(dir).c_str());
    std::printf("parameters:   %lld\n", static_cast<long long>(model.n_params()));
    const auto tokenizer = load_tokenizer(dir);  // loaded once: a GGUF vocabulary may be large
    if (!tokenizer)
      std::printf("tokenizer:    none (generate takes --prompt-ids, or --tokenizer FILE|byte)\n");
    else if (dir.ends_with(".gguf"))
      std::printf("tokenizer:    the file's tokenizer.ggml.*, %lld tokens\n",
                  static_cast<long long>(tokenizer->vocab_size()));
    else if (mambacpp::file_exists(mambacpp::path_join(dir, "tokenizer.json")))
      std::printf("tokenizer:    tokenizer.json, %lld tokens\n",
                  static_cast<long long>(tokenizer->vocab_size()));
    else
      std::printf("tokenizer:    byte (one token per byte; config.json \"tokenizer\")\n");
    std::printf("state bytes:  %lld per sequence", static_cast<long long>(fixed));
    if (per_token > 0)
      std::printf(" + %lld per token (attention KV cache)", static_cast<long long>(per_token));
    std::printf("\n");
    return 0;
  };
}

}  // namespace mambacpp::cli
