// `mambacpp bench --generate`: generation throughput on the bench's random-weight models. For each
// batch size, that many prompts of different lengths are prefilled one by one and decoded together
// (Session + generate_batch: stacked states for pure-SSM models, one state per sequence with
// attention layers); decode tokens/s per sequence and in total, greedy, eos ignored.
#include "bench_generate.h"

#include <chrono>
#include <cstdio>

#include "commands.h"

namespace mambacpp::cli {

namespace {

struct Row {
  bool stacked = false;
  double prefill_tok_s = 0, per_seq_tok_s = 0, total_tok_s = 0;
};

Row run_batch(const Model& model, int64_t batch, int64_t decode_tokens, const KernelPlan& plan) {
  std::vector<Session> sessions;
  std::vector<Sampler> samplers;
  std::vector<std::vector<int32_t>> prompts;
  int64_t prompt_tokens = 0;
  for (int64_t b = 0; b < batch; ++b) {
    sessions.emplace_back(model, SessionOptions{.plan = plan});
    samplers.emplace_back(SamplingParams{.temperature = 0.0f}, static_cast<int32_t>(model.vocab_size()));
    std::vector<int32_t> p(static_cast<size_t>(8 + 4 * b));  // different lengths: 8, 12, 16, ...
    for (size_t t = 0; t < p.size(); ++t) p[t] = static_cast<int32_t>((t * 7919 + b * 104729) % 50000);
    prompt_tokens += static_cast<int64_t>(p.size());
    prompts.push_back(std::move(p));
  }
  const BatchResult r = generate_batch(sessions, prompts, {.max_tokens = decode_tokens}, samplers);
  Row row;
  row.stacked = r.stacked;
  row.prefill_tok_s = static_cast<double>(prompt_tokens) / r.prefill_seconds;
  row.per_seq_tok_s = static_cast<double>(decode_tokens) / r.decode_seconds;
  row.total_tok_s = row.per_seq_tok_s * static_cast<double>(batch);
  return row;
}

}  // namespace

int bench_generate(const GenerateBenchArgs& a) {
  std::printf(
      "mambacpp bench --generate: random weights (the bench shapes), %s on %s, greedy, %lld tokens per "
      "sequence;\nbatch B = B prompts of 8, 12, 16, ... tokens, each prefilled alone, then decoded "
      "together\n\n",
      a.dtype.c_str(), a.device.c_str(), static_cast<long long>(a.decode_tokens));
  std::printf(
      "| model       | params (M) | threads | batch | decoding     | decode tok/s per seq | decode tok/s "
      "total |\n");
  std::printf(
      "|-------------|-----------:|--------:|------:|--------------|---------------------:|------------------"
      "-"
      ":|\n");
  std::fflush(stdout);
  for (const std::string& name : a.models) {
    Model model = a.model(name);
    const Device device = parse_device(a.device);
    model.to(device);
    model.set_matmul_dtype(matmul_dtype(a.dtype));
    // On cuda the host threads only sample: one row.
    const std::vector<int> thread_counts =
        device == Device::cpu ? a.threads : std::vector<int>{a.threads.front()};
    for (int threads : thread_counts) {
      set_num_threads(threads);
      run_batch(model, 1, 2, a.plan);  // warm-up: page in weights, size the thread pool
      for (int64_t batch : a.batches) {
        if (batch < 1) throw_error(ErrorCode::invalid_argument, "--batch: expected >= 1, found ", batch);
        const Row row = run_batch(model, batch, a.decode_tokens, a.plan);
        std::printf("| %-11s | %10.1f | %7d | %5lld | %-12s | %20.2f | %18.2f |\n", name.c_str(),
                    static_cast<double>(model.n_params()) / 1e6, threads, static_cast<long long>(batch),
                    row.stacked ? "stacked" : "per-sequence", row.per_seq_tok_s, row.total_tok_s);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

}  // namespace mambacpp::cli
