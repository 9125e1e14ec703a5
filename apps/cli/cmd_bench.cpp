// `mambacpp bench`: end-to-end throughput on random-weight models of realistic shape (d_model 768,
// 24 layers): whole-sequence prefill tokens/s, batch-1 decode tokens/s, for each thread count,
// and the peak resident memory. Each model runs in a forked child so its peak RSS is its own.
// Every measurement is repeated (--repeat, default 3): the table gives the median and the range.
#include <mambacpp/mambacpp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_bandwidth.h"
#include "bench_generate.h"
#include "commands.h"
#include "flags.h"

namespace mambacpp::cli {

namespace {

struct BenchArgs {
  std::vector<std::string> models = {"mamba1", "mamba2", "mamba3-siso", "mamba3-mimo", "hybrid"};
  std::vector<int> threads = {1, 2};
  int64_t seq_len = 2048, decode_tokens = 32, n_layer = 24, d_model = 768;
  int64_t repeat = 3;  // --repeat: timed runs of each prefill and decode measurement
  std::string json_path;
  std::string device = "cpu";
  std::string dtype = "f32";              // linear-layer weights (bf16, f16: CUDA only)
  std::string weights = "f32";            // --weights: CPU GGUF weight type (bf16, q8_0, q4_0, q4_k)
  bool generate = false;                  // --generate: batched generation instead (bench_generate.cpp)
  bool bandwidth = false;                 // --bandwidth: the memory read bandwidth (bench_bandwidth.cpp)
  int64_t bandwidth_mib = 0;              // --bandwidth-mib: its buffer (0: 4x the LLC, >= 1 GiB)
  bool eager = false;                     // --eager: cuda decode without the captured graph
  int64_t d_intermediate = 0;             // --d-intermediate: a gated MLP after each mixer
  bool profile = false;                   // --profile: device time per op (eager), to stderr
  std::vector<int64_t> batches = {1, 8};  // --generate: each; else the first is the batch
  std::vector<std::string> kernels;       // --kernel NAME=VALUE: the plan, recorded in --json
};

// The families' layer patterns at reduced width (d_model --d-model, heads of 64): Nemotron-Nano-9B-v2
// (56 layers, M/-/*), Nemotron-3-Nano-30B-A3B (52 layers with MoE), Granite-4.0-H-Tiny (40 layers,
// attention every 10th, MoE on every layer), Jamba (attention 1 in 8, MoE every other layer),
// Zamba2 (shared blocks every 6th layer), Bamba, Falcon-H1, Falcon-Mamba and Codestral (Mamba-2,
// 8 groups). Empty for the other names.
nlohmann::json family_bench_json(const std::string& name, const BenchArgs& a) {
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

ModelConfig bench_config(const std::string& name, const BenchArgs& a) {
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

// Median and range of repeated measurements.
struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  if (n == 0) return {};
  return {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v.front(), v.back()};
}
std::string range_text(const Spread& s, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f-%.*f", decimals, s.min, decimals, s.max);
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A families' model: share of each sublayer kind (MoE, Mamba2, Attn, MLP, ...) in the wall time of
// a prefill and of decode steps, timed with a device sync around every sublayer (a separate run).
std::string sublayer_shares(Model& model, const ModelConfig& c, const BenchArgs& a, int64_t batch) {
  auto report = [](const SublayerTimes& t, double wall) {
    std::ostringstream s;
    for (const auto& [label, sec] : t.seconds)
      s << " " << label << " " << static_cast<int>(100 * sec / wall + 0.5) << "%";
    return s.str();
  };
  Tensor ids = Tensor::empty({batch, a.seq_len}, DType::i64);
  for (int64_t i = 0; i < batch * a.seq_len; ++i) ids.data<int64_t>()[i] = (i * 7919) % c.vocab_size;
  const Device device = model.device();
  Exec exec(device, kernel_plan(a.kernels));
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
std::string run_model(const std::string& name, const BenchArgs& a) {
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
      device == Device::cpu ? a.threads : std::vector<int>{a.threads.front()};
  const int64_t batch = a.batches.front();  // without --generate: the first --batch value (default 1)
  Exec exec(device, kernel_plan(a.kernels));
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

Runner add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  app.add_option(
      "--models", a->models,
      "models to run: mamba1 mamba2 mamba3-siso mamba3-mimo hybrid, or families: nemotron-h nemotron-h-moe "
      "granite-4-h jamba zamba2 bamba falcon-h1 falcon-mamba codestral");
  app.add_option("--threads", a->threads, "thread counts to measure (default 1 2)")
      ->check(int_range(1, kMaxThreads));
  app.add_option("--seq-len", a->seq_len, "prefill length (default 2048)")->check(int_range(1));
  app.add_option("--decode-tokens", a->decode_tokens, "decode steps timed (default 32)")->check(int_range(1));
  app.add_option("--n-layer", a->n_layer, "layers (default 24)")->check(int_range(1));
  app.add_option("--d-model", a->d_model, "model width (default 768)")->check(int_range(1));
  app.add_option("--d-intermediate", a->d_intermediate,
                 "gated-MLP width after each mixer (default 0: none; the hybrid model has none)")
      ->check(int_range(0));
  CLI::Option* repeat = app.add_option("--repeat", a->repeat,
                                       "timed runs of each measurement; the table gives median and range "
                                       "(default 3)")
                            ->check(int_range(1, 1000));
  app.add_option("--json", a->json_path, "also write JSON lines to this file");
  add_device_option(app, a->device, "cpu or cuda (default cpu; on cuda one row per model)");
  add_dtype_option(app, a->dtype);
  app.add_option("--weights", a->weights,
                 "cpu: run the models from a GGUF of bf16, q8_0, q4_0 or q4_k weights (default f32)")
      ->check(CLI::IsMember({"f32", "bf16", "q8_0", "q4_0", "q4_k"}));
  add_kernel_option(app, a->kernels);
  app.add_flag("--eager", a->eager, "cuda: decode with eager launches (default: a captured CUDA graph)");
  app.add_flag("--profile", a->profile,
               "cuda: print device time per op for prefill and decode to stderr (decode runs eager)");
  app.add_flag("--bandwidth", a->bandwidth,
               "measure the memory read bandwidth at each --threads count (4 KiB and 2 MiB pages) instead");
  app.add_option("--bandwidth-mib", a->bandwidth_mib,
                 "--bandwidth: buffer size in MiB (default 4x the last-level cache, at least 1024)")
      ->check(int_range(0, 1 << 20));
  app.add_flag("--generate", a->generate,
               "benchmark generation: decode tok/s per sequence and total at each --batch");
  app.add_option("--batch", a->batches,
                 "batch sizes for --generate (default 1 8); without it, the first is the batch (default 1)")
      ->check(int_range(1));
  return [a, repeat]() {
    check_dtype_device(a->dtype, a->device);
    if (a->weights != "f32" && a->device != "cpu")
      throw_error(ErrorCode::unsupported, "--weights ", a->weights, " runs on the cpu only");
    check_output_path("--json", a->json_path);
    const KernelPlan plan = kernel_plan(a->kernels);            // checked before forking; recorded per result
    for (const auto& name : a->models) bench_config(name, *a);  // validate names before forking
    if (a->generate && repeat->count() > 0)
      mambacpp::throw_error(ErrorCode::invalid_argument,
                            "bench: --repeat applies to the prefill/decode table, "
                            "not to --generate");
    if (a->bandwidth)
      return bench_bandwidth(a->threads, a->bandwidth_mib, repeat->count() > 0 ? a->repeat : 5);
    if (a->generate)
      return bench_generate({a->models, a->threads, a->batches, a->decode_tokens, a->device, a->dtype,
                             [a](const std::string& name) { return bench_config(name, *a); }, plan});
    // The parent must not touch the CUDA runtime: a child forked after CUDA initialized cannot use
    // it. Only the name is checked here; each child opens the device itself.
    if (a->device != "cpu" && a->device != "cuda")
      throw_error(ErrorCode::invalid_argument, "unknown device '", a->device, "' (expected cpu or cuda)");
    std::printf(
        "mambacpp bench: random weights, d_model %lld, %lld layers%s, vocab 50277, %s GEMM weights, "
        "batch %lld, %s%s\n",
        static_cast<long long>(a->d_model), static_cast<long long>(a->n_layer),
        a->d_intermediate > 0
            ? (" (each with a gated MLP of " + std::to_string(a->d_intermediate) + ")").c_str()
            : "",
        (a->weights != "f32" ? a->weights + " (GGUF)" : a->dtype).c_str(),
        static_cast<long long>(a->batches.front()), a->device.c_str(),
        a->device == "cpu" ? ""
        : a->eager         ? " (eager decode)"
                           : " (decode through a CUDA graph)");
    std::printf(
        "prefill = whole-sequence pass over %lld tokens; decode = %lld one-token steps after it;\n"
        "each the median of %lld runs, with the range (min-max) of those runs\n",
        static_cast<long long>(a->seq_len), static_cast<long long>(a->decode_tokens),
        static_cast<long long>(a->repeat));
    std::printf("kernels: %s\n\n", plan.describe().c_str());
    std::printf(
        "| model       | params (M) | threads | prefill tok/s | prefill range   | decode tok/s | decode "
        "range  "
        "| weights MB/token | weight GB/s | peak RSS (MiB) |\n");
    std::printf(
        "|-------------|-----------:|--------:|--------------:|----------------:|-------------:|-------------"
        "-:"
        "|-----------------:|------------:|---------------:|\n");
    std::fflush(stdout);
    std::string json;
    for (const auto& name : a->models) {
      int fds[2];
      if (pipe(fds) != 0) throw_error(ErrorCode::io, "bench: pipe failed");
      const pid_t pid = fork();
      if (pid == 0) {
        close(fds[0]);
        int rc = 0;
        std::string result;
        try {
          result = run_model(name, *a);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "error: %s\n", e.what());
          rc = 1;
        }
        if (write(fds[1], result.data(), result.size()) < 0) rc = 1;
        close(fds[1]);
        _exit(rc);
      }
      close(fds[1]);
      std::string result;
      char buf[4096];
      ssize_t n;
      while ((n = read(fds[0], buf, sizeof buf)) > 0) result.append(buf, static_cast<size_t>(n));
      close(fds[0]);
      int status = 0;
      struct rusage usage {};
      wait4(pid, &status, 0, &usage);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw_error(ErrorCode::io, "bench: model '", name, "' failed");
      const double rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;
      std::string shares;
      if (const size_t hash = result.find('#'); hash != std::string::npos) {
        shares = result.substr(hash + 1);
        result.resize(hash);
      }
      std::istringstream in(result);
      long long params = 0;
      unsigned long long weight_bytes = 0;  // read by one decode step
      in >> params >> weight_bytes;
      int threads;
      while (in >> threads) {
        std::vector<double> runs(static_cast<size_t>(2 * a->repeat));
        for (double& r : runs) in >> r;
        if (!in)
          mambacpp::throw_error(ErrorCode::io, "bench: model '", name, "' returned a malformed result");
        const std::vector<double> prefill_runs(runs.begin(), runs.begin() + a->repeat),
            decode_runs(runs.begin() + a->repeat, runs.end());
        const Spread prefill = spread_of(prefill_runs), decode = spread_of(decode_runs);
        // The GB/s the best decode run drew its weights at (the rest of a step, conv, scan and
        // norms, is counted as if it read weights too): against `bench --bandwidth`.
        const double weight_gbs = static_cast<double>(weight_bytes) * decode.max / 1e9;
        std::printf("| %-11s | %10.1f | %7d | %13.1f | %15s | %12.2f | %13s | %16.1f | %11.1f | %14.0f |\n",
                    name.c_str(), static_cast<double>(params) / 1e6, threads, prefill.median,
                    range_text(prefill, 1).c_str(), decode.median, range_text(decode, 2).c_str(),
                    static_cast<double>(weight_bytes) / 1e6, weight_gbs, rss_mib);
        std::fflush(stdout);
        // prefill_tok_s / decode_tok_s: the medians (the fields scripts read); every run follows.
        nlohmann::json js = {{"model", name},
                             {"device", a->device},
                             {"dtype", a->dtype},
                             {"weights", a->weights},
                             {"params", params},
                             {"threads", threads},
                             {"batch", a->batches.front()},
                             {"seq_len", a->seq_len},
                             {"repeat", a->repeat},
                             {"prefill_tok_s", prefill.median},
                             {"prefill_tok_s_min", prefill.min},
                             {"prefill_tok_s_max", prefill.max},
                             {"prefill_tok_s_runs", prefill_runs},
                             {"decode_tok_s", decode.median},
                             {"decode_tok_s_min", decode.min},
                             {"decode_tok_s_max", decode.max},
                             {"decode_tok_s_runs", decode_runs},
                             {"decode_weight_bytes", weight_bytes},
                             {"decode_weight_gbs", weight_gbs},
                             {"peak_rss_mib", rss_mib},
                             {"kernels", nlohmann::json::parse(plan.to_json())}};
        json += js.dump() + "\n";
      }
      if (!shares.empty()) {
        std::printf("|   share of time (%s, sync per sublayer): %s |\n", name.c_str(), shares.c_str());
        std::fflush(stdout);
      }
    }
    if (!a->json_path.empty()) write_file_atomic(a->json_path, json);
    return 0;
  };
}

}  // namespace mambacpp::cli
