// Model families (HF `model_type`s beyond mamba / mamba2): each family is one file here that maps
// its config.json onto the shared fields of ModelConfig (configure) and each layer onto a
// Block of shared mixers (build_block); the block stack, the mixers and the ops are shared.
// Adding a family = its file + one line in families/registry.cpp + fixtures.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "io/config_reader.h"
#include "models/config.h"
#include "models/model.h"
#include "ops/elementwise/elementwise.h"
#include "ops/moe/moe.h"

namespace mamba::models {

// What the layers of one Model::build share while they are created (Zamba2's shared blocks,
// found by a family-chosen key); it lives for that build only.
struct BuildContext {
  std::map<std::string, std::shared_ptr<void>> shared;
};

struct Family {
  const char* model_type;
  // Validates c.family_json (errors name `source` and the key) and sets the shared fields of c:
  // d_model, n_layer, vocab_size / vocab_padded, norm_eps, tie_embeddings, tensor names,
  // multipliers, attn_layer_idx (the layers that keep a KV cache), layer_names, ssm_layer.
  void (*configure)(ModelConfig& c, const std::string& source);
  // Creates layer `layer`'s norms, mixers and FFN (names relative to "<layers_name()><layer>.").
  void (*build_block)(const ModelConfig& c, int64_t layer, Block& b, BuildContext& ctx);
};

// The family of `model_type`; an unknown one is an error naming `source` and the known types.
const Family& find_family(const std::string& model_type, const std::string& source);

// ---- Shared parts the family files assemble. ----

// The fields every HF family has (hidden_size, num_hidden_layers, vocab_size, tie_word_embeddings,
// `eps_key`), validated; names default to the Llama-style "model." layout.
// `default_layers` when num_hidden_layers is absent (Nemotron-H derives it from its pattern).
void configure_common(const io::Reader& r, ModelConfig& c, const char* eps_key, int64_t default_layers = 0);

// A Mamba-2 mixer of the HF hybrids (in_proj -> [z | xBC | dt], no MLP part), d_inner = heads·head_dim.
struct Mamba2Spec {
  int64_t d_model = 0, n_heads = 0, head_dim = 0, n_groups = 1, d_state = 128, d_conv = 4, chunk_size = 256;
  bool conv_bias = true, proj_bias = false, rmsnorm = true, norm_before_gate = false;
  double norm_eps = 1e-5, dt_limit_lo = 0.0, dt_limit_hi = INFINITY;
};
// Reads the usual `mamba_*` keys with the given names; `source` for errors.
std::unique_ptr<Mixer> make_hf_mamba2(const Mamba2Spec& s, const std::string& source);
// The Mamba-2 of the `mamba_*` keys (Bamba, Granite-4.0-H): mamba_n_heads, mamba_d_head (or "auto"),
// mamba_expand, mamba_n_groups, mamba_d_state, mamba_d_conv, mamba_chunk_size, mamba_conv_bias,
// mamba_proj_bias, time_step_limit; validated against hidden_size.
Mamba2Spec read_mamba_keys(const io::Reader& r, const ModelConfig& c);
// The (lo, hi) of `time_step_limit` when present.
void read_time_step_limit(const io::Reader& r, Mamba2Spec& s);

// Attention with separate q/k/v/o projections (Llama layout): NoPE or rotary on the first
// `rotary_dim` dims of each head (GPT-NeoX half split), GQA, optional LoRA adapters on q/k/v.
struct AttentionSpec {
  std::string prefix = "self_attn.";  // names: prefix + "q_proj.weight", ...
  int64_t d_in = 0, d_out = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  bool qkv_bias = false, o_bias = false;
  int64_t rotary_dim = 0;  // 0 = no positional encoding
  double rope_theta = 10000.0;
  double softmax_scale = 0.0;  // 0 = 1/sqrt(head_dim)
  // LoRA adapters (Zamba2): q += B·(A·x), names adapter_q + ".0.weight" [rank, d_in], ".1.weight" [out,
  // rank].
  int64_t adapter_rank = 0;
  std::string adapter_q, adapter_k, adapter_v;
};
std::unique_ptr<Mixer> make_attention_hf(const AttentionSpec& s);
// Rotary dims and theta from `rope_parameters` / `rope_theta` / `partial_rotary_factor`.
void read_rope(const io::Reader& r, AttentionSpec& s);

// Feed-forward: gated (act(gate)·up) from separate gate / up projections or one fused [gate; up]
// matrix, or non-gated act(up); then down. A LoRA adapter may add to the fused gate|up (Zamba2).
struct MlpSpec {
  int64_t d_model = 0, hidden = 0;
  ops::GateAct act = ops::GateAct::silu;
  bool gated = true, bias = false;
  std::string gate, up, gate_up, down;  // full names relative to the layer (empty = absent)
  int64_t adapter_rank = 0;
  std::string adapter;  // + ".0.weight" [rank, d_model], ".1.weight" [2·hidden, rank]
};
std::unique_ptr<Mixer> make_mlp(const MlpSpec& s);

// Mixture of experts with an optional shared MLP added to its output.
struct MoeSpec {
  int64_t d_model = 0, n_experts = 0, hidden = 0;
  ops::MoeRouterParams router;
  ops::MoeActivation act = ops::MoeActivation::swiglu;
  std::string router_weight, correction_bias;  // names; correction bias optional
  // Experts either one tensor per expert (names with "{e}" for the index; gate empty when not
  // gated) or stacked: in_stacked [E, 2I or I, D] and out_stacked [E, D, I].
  std::string expert_gate, expert_up, expert_down, in_stacked, out_stacked;
  bool has_shared = false;
  MlpSpec shared;
};
std::unique_ptr<Mixer> make_moe(const MoeSpec& s);

// `c.n_layer` layer-kind names, each checked against `allowed`: errors name the key and index.
void check_layer_kinds(const std::vector<std::string>& kinds, const std::vector<std::string>& allowed,
                       int64_t n_layer, const std::string& source, const char* key);

}  // namespace mamba::models
