// `mambacpp info`'s report (model.h, model_report): architecture, layer kinds, the dimensions of
// each mixer kind, parameters, the stored weight dtype, the tokenizer, state bytes.
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "internal.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "models/attention.h"
#include "models/mamba1.h"
#include "models/mamba2.h"
#include "models/mamba3.h"
#include "runtime/model_files.h"

namespace mamba::models {

namespace {

using io::CheckpointFormat;
using io::GgufFile;
using io::GgufTensorInfo;
using io::SafeTensors;
using runtime::load_tokenizer;

// The report's pieces, printf-formatted, handed on as they are made (an error part-way leaves
// the lines before it written, as a streamed report would).
class Report {
public:
  explicit Report(const std::function<void(const std::string&)>& sink) : sink_(sink) {}
  [[gnu::format(printf, 2, 3)]] void printf(const char* format, ...) {
    char buf[1024];
    va_list args;
    va_start(args, format);
    const int n = std::vsnprintf(buf, sizeof buf, format, args);
    va_end(args);
    if (n < static_cast<int>(sizeof buf)) {
      sink_(buf);
      return;
    }
    std::string big(static_cast<size_t>(n) + 1, '\0');
    va_start(args, format);
    std::vsnprintf(big.data(), big.size(), format, args);
    va_end(args);
    big.resize(static_cast<size_t>(n));
    sink_(big);
  }

private:
  const std::function<void(const std::string&)>& sink_;
};

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
void print_mixer_dims(Report& out, const ModelConfig& c, const std::set<std::string>& kinds) {
  auto has = [&](const char* prefix) {
    for (const std::string& k : kinds)
      if (k.rfind(prefix, 0) == 0) return true;
    return false;
  };
  if (has("Mamba1")) {
    const auto& m = c.section<Mamba1Config>();
    out.printf("mamba1:       d_state %lld, expand %g (d_inner %lld), d_conv %lld, dt_rank %lld\n",
               static_cast<long long>(m.d_state), m.expand, static_cast<long long>(m.d_inner),
               static_cast<long long>(m.d_conv), static_cast<long long>(m.dt_rank));
  }
  if (has("Mamba2")) {
    const auto& m = c.section<Mamba2Config>();
    out.printf(
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
    out.printf(
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
    out.printf("attention:    heads %lld, kv heads %lld, head_dim %lld, rotary dims %lld\n",
               static_cast<long long>(a.num_heads), static_cast<long long>(a.num_heads_kv),
               static_cast<long long>(a.head_dim), static_cast<long long>(a.rotary_emb_dim));
  }
}

// A family's dimensions as its config.json names them (the first key present of each list).
void print_family_dims(Report& out, const nlohmann::json& j) {
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
    if (!s.empty()) out.printf("%-14s%s\n", title, s.c_str());
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

void report(const std::string& dir, Report& out) {
  const std::string* model_dir = &dir;
  // From the file's mapping: info reads the sizes and the header, not every weight.
  const Model model = Model::load(dir, {.gguf_mapped = true});
  const ModelConfig& c = model.config();
  out.printf("model:        %s\n", model_dir->c_str());
  out.printf("format:       %s%s\n",
             dir.ends_with(".gguf")             ? "GGUF (llama.cpp)"
             : c.format == CheckpointFormat::hf ? "HF transformers"
                                                : "state-spaces/mamba",
             c.family.empty() ? "" : (" (" + c.family + ")").c_str());
  out.printf("d_model:      %lld\n", static_cast<long long>(c.d_model));
  out.printf("n_layer:      %lld\n", static_cast<long long>(c.n_layer));
  out.printf("vocab:        %lld (padded to %lld)\n", static_cast<long long>(c.vocab_size),
             static_cast<long long>(c.vocab_padded));
  out.printf("norm:         %s, eps %g\n", c.rms_norm ? "RMSNorm" : "LayerNorm", c.norm_eps);
  if (c.family.empty())
    out.printf("mlp:          %s\n",
               c.d_intermediate > 0 ? ("gated, hidden " + std::to_string(c.mlp_hidden)).c_str() : "none");
  out.printf("tied head:    %s\n", c.tie_embeddings ? "yes" : "no");
  out.printf("layers:      ");
  int64_t fixed = 0, per_token = 0;
  std::set<std::string> kinds;
  for (const auto& b : model.blocks()) {  // e.g. "Mamba2", "Attn(NoPE)+MoE", "Mamba2|Attn(RoPE)+MLP"
    std::string layer = b.mixer->label();
    // Appended piece by piece: GCC 12's -Wrestrict misfires on `"|" + label()` inlined here.
    if (b.mixer_par) layer.append("|").append(b.mixer_par->label());
    if (b.ffn) layer.append("+").append(b.ffn->label());
    if (b.mlp) layer += "+MLP";
    out.printf(" %s", layer.c_str());
    kinds.insert(b.mixer->label());
    if (b.mixer_par) kinds.insert(b.mixer_par->label());
    for (const auto* m : {b.mixer.get(), b.mixer_par.get()})
      if (m) {
        fixed += m->state_bytes_fixed();
        per_token += m->state_bytes_per_token();
      }
  }
  out.printf("\n");
  if (c.family.empty())
    print_mixer_dims(out, c, kinds);
  else
    print_family_dims(out, c.family_json);
  out.printf("weights:      %s\n", stored_dtypes(dir).c_str());
  out.printf("parameters:   %lld\n", static_cast<long long>(model.n_params()));
  const auto tokenizer = load_tokenizer(dir);  // loaded once: a GGUF vocabulary may be large
  if (!tokenizer)
    out.printf("tokenizer:    none (generate takes --prompt-ids, or --tokenizer FILE|byte)\n");
  else if (dir.ends_with(".gguf"))
    out.printf("tokenizer:    the file's tokenizer.ggml.*, %lld tokens\n",
               static_cast<long long>(tokenizer->vocab_size()));
  else if (mamba::file_exists(mamba::path_join(dir, "tokenizer.json")))
    out.printf("tokenizer:    tokenizer.json, %lld tokens\n",
               static_cast<long long>(tokenizer->vocab_size()));
  else
    out.printf("tokenizer:    byte (one token per byte; config.json \"tokenizer\")\n");
  out.printf("state bytes:  %lld per sequence", static_cast<long long>(fixed));
  if (per_token > 0) out.printf(" + %lld per token (attention KV cache)", static_cast<long long>(per_token));
  out.printf("\n");
}

}  // namespace
}  // namespace mamba::models

namespace mambacpp {

void model_report(const std::string& path, const std::function<void(const std::string& text)>& write) {
  guard([&] {
    mamba::models::Report out(write);
    mamba::models::report(path, out);
  });
}

}  // namespace mambacpp
