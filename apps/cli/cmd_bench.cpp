// `mambacpp bench`: end-to-end throughput on random-weight models of realistic shape (d_model 768,
// 24 layers): whole-sequence prefill tokens/s, batch-1 decode tokens/s, for each thread count,
// and the peak resident memory. Each model runs in a forked child so its peak RSS is its own.
#include <mambacpp/mambacpp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench_generate.h"
#include "commands.h"

namespace mambacpp::cli {

namespace {

struct BenchArgs {
  std::vector<std::string> models = {"mamba1", "mamba2", "mamba3-siso", "mamba3-mimo", "hybrid"};
  std::vector<int> threads = {1, 2};
  int64_t seq_len = 2048, decode_tokens = 32, n_layer = 24, d_model = 768;
  std::string json_path;
  std::string device = "cpu";
  std::string dtype = "f32";              // linear-layer weights (bf16, f16: CUDA only)
  bool generate = false;                  // --generate: batched generation instead (bench_generate.cpp)
  bool eager = false;                     // --eager: cuda decode without the captured graph
  int64_t d_intermediate = 0;             // --d-intermediate: a gated MLP after each mixer
  bool profile = false;                   // --profile: device time per op (eager), to stderr
  std::vector<int64_t> batches = {1, 8};  // --generate: each; else the first is the batch
};

ModelConfig bench_config(const std::string& name, const BenchArgs& a) {
  ModelConfig c;
  c.d_model = a.d_model;
  c.n_layer = a.n_layer;
  c.vocab_size = 50277;
  c.pad_vocab_size_multiple = 8;
  c.d_intermediate = a.d_intermediate;
  if (name == "mamba1") {
    c.ssm_layer = MixerKind::mamba1;
    c.mamba1.d_state = 16;
  } else if (name == "mamba2" || name == "hybrid") {
    c.ssm_layer = MixerKind::mamba2;
    c.mamba2.d_state = 128;
    c.mamba2.head_dim = 64;
    if (name == "hybrid") {  // attention every 6th layer, GQA 12/4 heads, rotary on 64 dims
      for (int64_t i = 5; i < c.n_layer; i += 6) c.attn_layer_idx.push_back(i);
      c.attn.num_heads = 12;
      c.attn.num_heads_kv = 4;
      c.attn.rotary_emb_dim = 64;
      c.attn.causal = true;
      c.d_intermediate = 0;
    }
  } else if (name == "mamba3-siso" || name == "mamba3-mimo") {
    c.ssm_layer = MixerKind::mamba3;
    c.mamba3.d_state = 128;
    c.mamba3.head_dim = 64;
    c.mamba3.is_mimo = name == "mamba3-mimo";
    c.mamba3.mimo_rank = 4;
    c.mamba3.chunk_size = c.mamba3.is_mimo ? 16 : 64;
  } else {
    mamba::throw_error(ErrorCode::invalid_argument, "bench: unknown model '", name,
                       "' (expected mamba1, mamba2, mamba3-siso, mamba3-mimo or hybrid)");
  }
  mamba::io::finalize_model_config(c, "bench:" + name);
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs one model at every thread count; returns one line per thread count:
// "threads prefill_tok_s decode_tok_s" (tokens of the whole batch per second).
std::string run_model(const std::string& name, const BenchArgs& a) {
  const ModelConfig c = bench_config(name, a);
  const Device device = parse_device(a.device);
  Model model = Model::random(c, 1234);
  model.to(device);
  model.set_matmul_dtype(matmul_dtype(a.dtype));
  std::ostringstream out;
  out << model.n_params() << "\n";
  // On the GPU the thread count only drives host-side work: one row, at the first count.
  const std::vector<int> thread_counts =
      device == Device::cpu ? a.threads : std::vector<int>{a.threads.front()};
  const int64_t batch = a.batches.front();  // without --generate: the first --batch value (default 1)
  for (int threads : thread_counts) {
    set_num_threads(threads);
    Tensor ids = Tensor::empty({batch, a.seq_len}, DType::i64);
    for (int64_t i = 0; i < batch * a.seq_len; ++i) ids.data<int64_t>()[i] = (i * 7919) % c.vocab_size;
    {  // warm-up: page in weights, size the thread pool
      State warm = model.new_state(batch);
      model.forward(ids.slice(1, 0, 16).contiguous(), warm, 1);
    }
    State state = model.new_state(batch);
    set_op_profiling(a.profile);
    op_profile_reset();
    auto t0 = std::chrono::steady_clock::now();
    Tensor logits = model.forward(ids, state, /*num_last=*/1);
    device_synchronize(device);  // device work is asynchronous: wait before reading the clock
    const double prefill_s = seconds_since(t0);
    const std::string prefill_profile = op_profile_report();
    Tensor next = Tensor::full({batch}, 42.0f).to(DType::i64);
    // On cuda (no attention) decode replays a captured graph of the step (StepGraph); its first
    // two steps (eager warm-up, capture) run before the clock, in both modes.
    StepGraph graph(model);
    const bool use_graph = !a.eager && !a.profile && StepGraph::supported(model);
    auto step = [&] { return use_graph ? graph.step(next, state) : model.step(next, state); };
    for (int i = 0; i < 2; ++i) step();
    device_synchronize(device);
    op_profile_reset();
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < a.decode_tokens; ++i) step();
    device_synchronize(device);
    const double decode_s = seconds_since(t0);
    if (a.profile)
      std::fprintf(
          stderr,
          "\n%s prefill (batch %lld x %lld tokens), device time per op:\n%s\n%s decode (%lld steps), "
          "device time per op:\n%s\n",
          name.c_str(), static_cast<long long>(batch), static_cast<long long>(a.seq_len),
          prefill_profile.c_str(), name.c_str(), static_cast<long long>(a.decode_tokens),
          op_profile_report().c_str());
    set_op_profiling(false);
    out << threads << " " << batch * a.seq_len / prefill_s << " " << batch * a.decode_tokens / decode_s
        << "\n";
  }
  return out.str();
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  app.add_option("--models", a->models, "models to run: mamba1 mamba2 mamba3-siso mamba3-mimo hybrid");
  app.add_option("--threads", a->threads, "thread counts to measure (default 1 2)");
  app.add_option("--seq-len", a->seq_len, "prefill length (default 2048)");
  app.add_option("--decode-tokens", a->decode_tokens, "decode steps timed (default 32)");
  app.add_option("--n-layer", a->n_layer, "layers (default 24)");
  app.add_option("--d-model", a->d_model, "model width (default 768)");
  app.add_option("--d-intermediate", a->d_intermediate,
                 "gated-MLP width after each mixer (default 0: none; the hybrid model has none)");
  app.add_option("--json", a->json_path, "also write JSON lines to this file");
  app.add_option("--device", a->device, "cpu or cuda (default cpu; on cuda one row per model)");
  add_dtype_option(app, a->dtype);
  app.add_flag("--eager", a->eager, "cuda: decode with eager launches (default: a captured CUDA graph)");
  app.add_flag("--profile", a->profile,
               "cuda: print device time per op for prefill and decode to stderr (decode runs eager)");
  app.add_flag("--generate", a->generate,
               "benchmark generation: decode tok/s per sequence and total at each --batch");
  app.add_option("--batch", a->batches,
                 "batch sizes for --generate (default 1 8); without it, the first is the batch (default 1)");
  return [a]() {
    for (const auto& name : a->models) bench_config(name, *a);  // validate names before forking
    if (a->generate)
      return bench_generate({a->models, a->threads, a->batches, a->decode_tokens,
                             [a](const std::string& name) { return bench_config(name, *a); }});
    // The parent must not touch the CUDA runtime: a child forked after CUDA initialized cannot use
    // it. Only the name is checked here; each child opens the device itself.
    if (a->device != "cpu" && a->device != "cuda")
      mamba::throw_error(ErrorCode::invalid_argument, "unknown device '", a->device,
                         "' (expected cpu or cuda)");
    std::printf(
        "mambacpp bench: random weights, d_model %lld, %lld layers%s, vocab 50277, %s GEMM weights, "
        "batch %lld, %s%s\n",
        static_cast<long long>(a->d_model), static_cast<long long>(a->n_layer),
        a->d_intermediate > 0
            ? (" (each with a gated MLP of " + std::to_string(a->d_intermediate) + ")").c_str()
            : "",
        a->dtype.c_str(), static_cast<long long>(a->batches.front()), a->device.c_str(),
        a->device == "cpu" ? ""
        : a->eager         ? " (eager decode)"
                           : " (decode through a CUDA graph)");
    std::printf("prefill = whole-sequence pass over %lld tokens; decode = %lld one-token steps after it\n\n",
                static_cast<long long>(a->seq_len), static_cast<long long>(a->decode_tokens));
    std::printf("| model       | params (M) | threads | prefill tok/s | decode tok/s | peak RSS (MiB) |\n");
    std::printf("|-------------|-----------:|--------:|--------------:|-------------:|---------------:|\n");
    std::fflush(stdout);
    std::string json;
    for (const auto& name : a->models) {
      int fds[2];
      if (pipe(fds) != 0) mamba::throw_error(ErrorCode::io, "bench: pipe failed");
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
        mamba::throw_error(ErrorCode::io, "bench: model '", name, "' failed");
      const double rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;
      std::istringstream in(result);
      long long params = 0;
      in >> params;
      int threads;
      double prefill, decode;
      while (in >> threads >> prefill >> decode) {
        std::printf("| %-11s | %10.1f | %7d | %13.1f | %12.2f | %14.0f |\n", name.c_str(), params / 1e6,
                    threads, prefill, decode, rss_mib);
        std::fflush(stdout);
        std::ostringstream js;
        js << "{\"model\":\"" << name << "\",\"device\":\"" << a->device << "\",\"dtype\":\"" << a->dtype
           << "\",\"params\":" << params << ",\"threads\":" << threads << ",\"batch\":" << a->batches.front()
           << ",\"seq_len\":" << a->seq_len << ",\"prefill_tok_s\":" << prefill
           << ",\"decode_tok_s\":" << decode << ",\"peak_rss_mib\":" << rss_mib << "}\n";
        json += js.str();
      }
    }
    if (!a->json_path.empty()) mamba::write_file_atomic(a->json_path, json);
    return 0;
  };
}

}  // namespace mambacpp::cli
