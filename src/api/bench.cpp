// The benchmark entry (bench.h): random-weight models of the architectures' bench shapes and of
// the HF families' layer patterns at reduced width, timed prefill and decode (`mambacpp bench`).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "internal.h"
#include "models/architectures.h"
#include "models/config.h"
#include "ops/device.h"
#include "runtime/step_graph.h"

namespace mamba::models {

namespace {

using Options = mambacpp::bench::Options;
using ops::device_synchronize;
using ops::Exec;
using ops::op_profile_report;
using ops::op_profile_reset;
using ops::parse_device;
using runtime::StepGraph;

DType matmul_dtype(const std::string& dtype) {
  return dtype == "bf16" ? DType::bf16 : dtype == "f16" ? DType::f16 : DType::f32;
}

// The families' layer patterns at reduced width (d_model --d-model, heads of 64): Nemotron-Nano-9B-v2
// (56 layers, M/-/*), Nemotron-3-Nano-30B-A3B (52 layers with MoE), Granite-4.0-H-Tiny (40 layers,
// attention every 10th, MoE on every layer), Jamba (attention 1 in 8, MoE every other layer),
// Zamba2 (shared blocks every 6th layer), Bamba, Falcon-H1, Falcon-Mamba and Codestral (Mamba-2,
// 8 groups). Empty for the other names.
nlohmann::json family_bench_json(const std::string& name, const Options& a) {
  using nlohmann::json;
  const int64_t d = a.d_model, heads = 2 * d / 64, attn_heads = d / 64;
  json j = {{"hidden_size", d}, {"vocab_size", 50277}, {"tie_word_embeddings", false}, {"pad_token_id", 0}};
  const json mamba2 = {{"mamba_n_heads", heads},  {"mamba_d_head", 64},      {"mamba_n_groups", 1},
                       {"mamba_d_state", 128},    {"mamba_d_conv", 4},       {"mamba_expand", 2},
                       {"mamba_chunk_size", 256}, {"mamba_conv_bias", true}, {"mamba_proj_bias", false}};
  if (name == "nemotron-h" || name == "nemotron-h-moe") {
    j.update({{"model_type", "nemotron_h"},
              {"hybrid_override_pattern", name == "nemotron-h"
                                              ? "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-"
                                              : "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"},
              {"mamba_num_heads", heads},
              {"mamba_head_dim", 64},
              {"n_groups", 8},
              {"ssm_state_size", 128},
              {"conv_kernel", 4},
              {"chunk_size", 256},
              {"num_attention_heads", attn_heads},
              {"num_key_value_heads", std::max<int64_t>(attn_heads / 4, 1)},
              {"head_dim", 64},
              {"intermediate_size", 3 * d + d / 2},
              {"mlp_hidden_act", "relu2"},
              {"n_routed_experts", 32},
              {"num_experts_per_tok", 6},
              {"moe_intermediate_size", d / 3},
              {"moe_shared_expert_intermediate_size", d},
              {"n_group", 1},
              {"topk_group", 1},
              {"norm_topk_prob", true},
              {"routed_scaling_factor", 2.5}});
  } else if (name == "granite-4-h") {
    json types = json::array();
    for (int i = 0; i < 40; ++i) types.push_back(i % 10 == 5 ? "attention" : "mamba");
    j.update(mamba2);
    j.update({{"model_type", "granitemoehybrid"},
              {"num_hidden_layers", 40},
              {"layer_types", types},
              {"num_attention_heads", attn_heads},
              {"num_key_value_heads", std::max<int64_t>(attn_heads / 4, 1)},
              {"num_local_experts", 64},
              {"num_experts_per_tok", 6},
              {"intermediate_size", d / 3},
              {"shared_intermediate_size", 4 * d / 3},
              {"embedding_multiplier", 12.0},
              {"residual_multiplier", 0.22},
              {"logits_scaling", 6.0},
              {"attention_multiplier", 0.0078125}});
  } else if (name == "jamba") {
    j.update({{"model_type", "jamba"},
              {"num_hidden_layers", 32},
              {"attn_layer_period", 8},
              {"attn_layer_offset", 4},
              {"expert_layer_period", 2},
              {"expert_layer_offset", 1},
              {"num_experts", 16},
              {"num_experts_per_tok", 2},
              {"intermediate_size", 3 * d + d / 2},
              {"num_attention_heads", attn_heads},
              {"num_key_value_heads", std::max<int64_t>(attn_heads / 4, 1)},
              {"mamba_d_state", 16},
              {"mamba_d_conv", 4},
              {"mamba_expand", 2},
              {"mamba_dt_rank", (d + 15) / 16}});
  } else if (name == "zamba2") {
    json kinds = json::array(), ids = json::array();
    for (int i = 0; i < 24; ++i) {
      kinds.push_back(i % 6 == 5 ? "hybrid" : "mamba");
      if (i % 6 == 5) ids.push_back(i);
    }
    j.update({{"model_type", "zamba2"},
              {"num_hidden_layers", 24},
              {"layers_block_type", kinds},
              {"hybrid_layer_ids", ids},
              {"num_mem_blocks", 2},
              {"n_mamba_heads", heads},
              {"mamba_headdim", 64},
              {"mamba_ngroups", 1},
              {"mamba_d_state", 128},
              {"mamba_d_conv", 4},
              {"mamba_expand", 2},
              {"chunk_size", 256},
              {"num_attention_heads", attn_heads},
              {"num_key_value_heads", attn_heads},
              {"adapter_rank", 128},
              {"intermediate_size", 4 * d},
              {"hidden_act", "gelu"},
              {"use_mem_rope", true},
              {"tie_word_embeddings", true}});
  } else if (name == "bamba") {
    j.update(mamba2);
    j.update({{"model_type", "bamba"},
              {"num_hidden_layers", 32},
              {"attn_layer_indices", {9, 18, 27}},
              {"num_attention_heads", attn_heads},
              {"num_key_value_heads", std::max<int64_t>(attn_heads / 4, 1)},
              {"intermediate_size", 3 * d + d / 2},
              {"partial_rotary_factor", 0.5}});
  } else if (name == "falcon-h1") {
    j.update(mamba2);
    j.update({{"model_type", "falcon_h1"},
              {"num_hidden_layers", 24},
              {"mamba_d_ssm", 2 * d},
              {"mamba_rms_norm", true},
              {"num_attention_heads", attn_heads},
              {"num_key_value_heads", std::max<int64_t>(attn_heads / 4, 1)},
              {"head_dim", 64},
              {"intermediate_size", 3 * d},
              {"embedding_multiplier", 5.6},
              {"lm_head_multiplier", 0.04},
              {"ssm_multipliers", {0.5, 0.7, 0.8, 0.6, 1.2}},
              {"mlp_multipliers", {0.88, 0.59}}});
  } else if (name == "falcon-mamba") {
    j.update({{"model_type", "falcon_mamba"},
              {"num_hidden_layers", 24},
              {"state_size", 16},
              {"expand", 2},
              {"conv_kernel", 4},
              {"intermediate_size", 2 * d},
              {"mixer_rms_eps", 1e-6}});
  } else if (name == "codestral") {
    j.update({{"model_type", "mamba2"},
              {"num_hidden_layers", 24},
              {"num_heads", heads},
              {"head_dim", 64},
              {"n_groups", 8},
              {"state_size", 128},
              {"expand", 2},
              {"conv_kernel", 4},
              {"chunk_size", 256}});
  } else {
    return nullptr;
  }
  return j;
}

ModelConfig bench_config(const std::string& name, const Options& a) {
  if (const nlohmann::json j = family_bench_json(name, a); !j.is_null())
    return Model::config_from_json(j, "bench:" + name);
  ModelConfig c;
  if (!bench_model_config(name, a.d_model, a.n_layer, a.d_intermediate, c)) {
    std::string known;
    for (const std::string& n : bench_model_names()) known += n + ", ";
    throw_error(ErrorCode::invalid_argument, "bench: unknown model '", name, "' (expected ", known,
                "or a family: nemotron-h, nemotron-h-moe, granite-4-h, jamba, zamba2, bamba, falcon-h1, "
                "falcon-mamba, codestral)");
  }
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A families' model: share of each sublayer kind (MoE, Mamba2, Attn, MLP, ...) in the wall time of
// a prefill and of decode steps, timed with a device sync around every sublayer (a separate run).
std::string sublayer_shares(Model& model, const ModelConfig& c, const Options& a, int64_t batch) {
  auto report = [](const SublayerTimes& t, double wall) {
    std::ostringstream s;
    for (const auto& [label, sec] : t.seconds)
      s << " " << label << " " << static_cast<int>(100 * sec / wall + 0.5) << "%";
    return s.str();
  };
  Tensor ids = Tensor::empty({batch, a.seq_len}, DType::i64);
  for (int64_t i = 0; i < batch * a.seq_len; ++i) ids.data<int64_t>()[i] = (i * 7919) % c.vocab_size;
  const Device device = model.device();
  Exec exec(device, a.plan.impl().plan);
  SublayerTimes prefill, decode;
  State state = model.new_state(batch);
  model.set_sublayer_timing(&prefill);
  auto t0 = std::chrono::steady_clock::now();
  model.forward(exec, ids, state, 1);
  device_synchronize(device);
  const double prefill_s = seconds_since(t0);
  model.set_sublayer_timing(&decode);
  const Tensor next = Tensor::full({batch}, 42.0f).to(DType::i64);
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < a.decode_tokens; ++i) model.step(exec, next, state);
  device_synchronize(device);
  const double decode_s = seconds_since(t0);
  model.set_sublayer_timing(nullptr);
  return "prefill:" + report(prefill, prefill_s) + "; decode:" + report(decode, decode_s);
}

// The model written as a GGUF of `weights` (bf16, q8_0, ...) and read back, as `mambacpp quantize`
// and a GGUF user would: its quantized weights run from the file's mapping (the file is unlinked
// once mapped).
Model gguf_copy(const Model& model, const std::string& weights) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("mambacpp-bench-" + std::to_string(::getpid()) + "-" + weights + ".gguf"))
                               .string();
  const DType type = weights == "bf16"   ? DType::bf16
                     : weights == "q8_0" ? DType::q8_0
                     : weights == "q4_0" ? DType::q4_0
                                         : DType::q4_k;
  model.save_gguf(path, type);
  Model out = Model::load(path);
  std::filesystem::remove(path);
  return out;
}

// Bytes of weights one decode step reads: every parameter once (the tied head reads the embedding
// table whole), except an untied embedding, of which a step reads one row.
uint64_t decode_weight_bytes(Model& model) {
  uint64_t bytes = 0;
  const ModelConfig& c = model.config();
  model.visit_params([&](const ParamRef& p) {
    const Tensor& t = *p.tensor;
    if (p.name == c.embedding_name() && !c.tie_embeddings)
      bytes += t.nbytes() / static_cast<uint64_t>(std::max<int64_t>(t.size(0), 1));
    else
      bytes += t.nbytes();
  });
  return bytes;
}

// Runs one model at every thread count; returns one line per thread count:
// "threads prefill_tok_s x repeat decode_tok_s x repeat" (tokens of the whole batch per second).
std::string run_model(const std::string& name, const std::vector<int>& threads_list, const Options& a) {
  const ModelConfig c = bench_config(name, a);
  const Device device = parse_device(a.device);
  Model model = Model::random(c, 1234);
  if (a.weights != "f32") model = gguf_copy(model, a.weights);
  model.to(device);
  model.set_matmul_dtype(matmul_dtype(a.dtype));
  std::ostringstream out;
  out << model.n_params() << " " << decode_weight_bytes(model) << "\n";
  // On the GPU the thread count only drives host-side work: one row, at the first count.
  const std::vector<int> thread_counts =
      device == Device::cpu ? threads_list : std::vector<int>{threads_list.front()};
  const int64_t batch = a.batch;
  Exec exec(device, a.plan.impl().plan);
  for (int threads : thread_counts) {
    set_num_threads(threads);
    Tensor ids = Tensor::empty({batch, a.seq_len}, DType::i64);
    for (int64_t i = 0; i < batch * a.seq_len; ++i) ids.data<int64_t>()[i] = (i * 7919) % c.vocab_size;
    {  // warm-up: page in weights, size the thread pool
      State warm = model.new_state(batch);
      model.forward(exec, ids.slice(1, 0, 16).contiguous(), warm, 1);
    }
    // The runs alternate prefill and decode, so a slow spell of a shared machine shows as spread.
    std::vector<double> prefill_rates, decode_rates;
    for (int64_t run = 0; run < a.repeat; ++run) {
      const bool profile = a.profile && run == 0;
      State state = model.new_state(batch);
      exec.set_profiling(profile);
      op_profile_reset();
      auto t0 = std::chrono::steady_clock::now();
      Tensor logits = model.forward(exec, ids, state, /*num_last=*/1);
      device_synchronize(device);  // device work is asynchronous: wait before reading the clock
      const double prefill_s = seconds_since(t0);
      const std::string prefill_profile = op_profile_report();
      Tensor next = Tensor::full({batch}, 42.0f).to(DType::i64);
      // On cuda (no attention) decode replays a captured graph of the step (StepGraph); its first
      // two steps (eager warm-up, capture) run before the clock, in both modes.
      StepGraph graph(model);
      const bool use_graph = !a.eager && !a.profile && StepGraph::supported(model);
      auto step = [&] { return use_graph ? graph.step(exec, next, state) : model.step(exec, next, state); };
      for (int i = 0; i < 2; ++i) step();
      device_synchronize(device);
      op_profile_reset();
      t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < a.decode_tokens; ++i) step();
      device_synchronize(device);
      const double decode_s = seconds_since(t0);
      if (use_graph && run == 0) {  // the graph's own device time per step, back to back
        t0 = std::chrono::steady_clock::now();
        if (graph.replay_as_is(a.decode_tokens, state)) {
          device_synchronize(device);
          std::fprintf(
              stderr,
              "%s decode: %.1f us a step through the graph with its host part, %.1f us replays alone\n",
              name.c_str(), 1e6 * decode_s / static_cast<double>(a.decode_tokens),
              1e6 * seconds_since(t0) / static_cast<double>(a.decode_tokens));
        }
      }
      if (profile)
        std::fprintf(
            stderr,
            "\n%s prefill (batch %lld x %lld tokens), device time per op:\n%s\n%s decode (%lld steps), "
            "device time per op:\n%s\n",
            name.c_str(), static_cast<long long>(batch), static_cast<long long>(a.seq_len),
            prefill_profile.c_str(), name.c_str(), static_cast<long long>(a.decode_tokens),
            op_profile_report().c_str());
      exec.set_profiling(false);
      prefill_rates.push_back(static_cast<double>(batch * a.seq_len) / prefill_s);
      decode_rates.push_back(static_cast<double>(batch * a.decode_tokens) / decode_s);
    }
    out << threads;
    for (double r : prefill_rates) out << " " << r;
    for (double r : decode_rates) out << " " << r;
    out << "\n";
  }
  if (!c.family.empty()) out << "#" << sublayer_shares(model, c, a, batch);
  return out.str();
}

}  // namespace

}  // namespace mamba::models

namespace mambacpp::bench {

void check_model(const std::string& name, const Options& options) {
  guard([&] { mamba::models::bench_config(name, options); });
}

Model random_model(const std::string& name, const Options& options) {
  return guard([&] {
    return Model(std::make_unique<Model::Impl>(
        mamba::models::Model::random(mamba::models::bench_config(name, options), 1234)));
  });
}

std::string run_model(const std::string& name, const std::vector<int>& threads, const Options& options) {
  return guard([&] { return mamba::models::run_model(name, threads, options); });
}

}  // namespace mambacpp::bench
