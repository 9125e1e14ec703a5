// `mambacpp bench`: end-to-end throughput on random-weight models of realistic shape (d_model 768,
// 24 layers): whole-sequence prefill tokens/s, batch-1 decode tokens/s, for each thread count,
// and the peak resident memory. Each model runs in a forked child so its peak RSS is its own.
// Every measurement is repeated (--repeat, default 3): the table gives the median and the range.
#include <mambacpp/mambacpp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
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

// The library's bench options of the flags (bench.h).
bench::Options bench_options(const BenchArgs& a, const KernelPlan& plan) {
  bench::Options o;
  o.seq_len = a.seq_len;
  o.decode_tokens = a.decode_tokens;
  o.n_layer = a.n_layer;
  o.d_model = a.d_model;
  o.d_intermediate = a.d_intermediate;
  o.repeat = a.repeat;
  o.batch = a.batches.front();  // without --generate: the first --batch value (default 1)
  o.device = a.device;
  o.dtype = a.dtype;
  o.weights = a.weights;
  o.eager = a.eager;
  o.profile = a.profile;
  o.plan = plan;
  return o;
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
    const KernelPlan plan = kernel_plan(a->kernels);  // checked before forking; recorded per result
    const bench::Options options = bench_options(*a, plan);
    for (const auto& name : a->models) bench::check_model(name, options);  // validate names before forking
    if (a->generate && repeat->count() > 0)
      mambacpp::throw_error(ErrorCode::invalid_argument,
                            "bench: --repeat applies to the prefill/decode table, "
                            "not to --generate");
    if (a->bandwidth)
      return bench_bandwidth(a->threads, a->bandwidth_mib, repeat->count() > 0 ? a->repeat : 5);
    if (a->generate)
      return bench_generate(
          {a->models, a->threads, a->batches, a->decode_tokens, a->device, a->dtype,
           [options](const std::string& name) { return bench::random_model(name, options); }, plan});
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
          result = bench::run_model(name, a->threads, options);
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
