// `mambacpp logits`: int64 [batch, seq_len] ids -> float32 [batch, seq_len, vocab] logits, either
// one whole-sequence pass, or (--prefill K) a pass over the first K tokens then one-token steps.
#include <mambacpp/mambacpp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"
#include "flags.h"
#include "generation_flags.h"

namespace mambacpp::cli {

namespace {
struct LogitsArgs {
  std::string model, input, output;
  int64_t prefill = -1;
  int threads = 0;
  std::string device = "cpu";
  std::string dtype = "f32";
  std::vector<std::string> kernels;
};
}  // namespace

Runner add_logits(CLI::App& app) {
  auto a = std::make_shared<LogitsArgs>();
  app.add_option("-m,--model", a->model,
                 "model directory, a .gguf, or a training checkpoint ROOT (its latest step)")
      ->required();
  app.add_option("-i,--input", a->input, "int64 [batch, seq_len] .npy of token ids")->required();
  app.add_option("-o,--output", a->output, "float32 [batch, seq_len, vocab] .npy to write")->required();
  app.add_option("--prefill", a->prefill, "whole-sequence pass over the first K tokens, then one-token steps")
      ->check(int_range(0));
  add_threads_option(app, a->threads);
  add_device_option(app, a->device, "cpu or cuda (default cpu)");
  add_dtype_option(app, a->dtype);
  add_kernel_option(app, a->kernels);
  return [a]() {
    check_dtype_device(a->dtype, a->device);
    check_output_path("--output", a->output);
    set_num_threads(a->threads);
    const Device device = parse_device(a->device);
    Model model = Model::load(resolve_model(a->model));
    model.to(device);
    model.set_matmul_dtype(matmul_dtype(a->dtype));
    const Tensor ids = read_npy(a->input);
    if (ids.dim() != 2 || (ids.dtype() != DType::i64 && ids.dtype() != DType::i32))
      throw_error(ErrorCode::shape, a->input, ": expected int64 token ids of shape [batch, seq_len], found ",
                  dtype_name(ids.dtype()), " ", shape_str(ids.shape()));
    const int64_t batch = ids.size(0), seq_len = ids.size(1), vocab = model.vocab_padded();
    const Tensor flat = ids.to(DType::i64);
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const int64_t id = flat.data<int64_t>()[i];
      if (id < 0 || id >= model.vocab_padded())
        throw_error(ErrorCode::out_of_range, a->input, ": token id ", id, " at position ", i % seq_len,
                    " of sequence ", i / seq_len, " is outside the vocabulary [0, ", model.vocab_padded(),
                    ")");
    }
    if (a->prefill > seq_len)
      throw_error(ErrorCode::invalid_argument, "--prefill ", a->prefill, " is larger than seq_len ", seq_len);
    const auto t0 = std::chrono::steady_clock::now();
    State state = model.new_state(batch);
    Context exec(model.device(), kernel_plan(a->kernels));
    Tensor logits;
    if (a->prefill < 0) {
      logits = model.forward(exec, ids, state);
    } else {
      logits = Tensor::empty({batch, seq_len, vocab});
      const int64_t k = a->prefill;
      if (k > 0) logits.slice(1, 0, k).copy_from(model.forward(exec, ids.slice(1, 0, k), state));
      for (int64_t t = k; t < seq_len; ++t)
        logits.select(1, t).copy_from(model.step(exec, ids.select(1, t).contiguous(), state));
    }
    write_npy(a->output, logits.to(Device::cpu));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string how = a->prefill < 0 ? "whole-sequence pass"
                                           : "prefill " + std::to_string(a->prefill) + " + " +
                                                 std::to_string(seq_len - a->prefill) + " steps";
    std::fprintf(
        stderr, "logits: %lld x %lld tokens (%s) -> %s [%lld, %lld, %lld] float32, %.3f s (%.1f tok/s)\n",
        static_cast<long long>(batch), static_cast<long long>(seq_len), how.c_str(), a->output.c_str(),
        static_cast<long long>(batch), static_cast<long long>(seq_len), static_cast<long long>(vocab),
        seconds, seconds > 0 ? static_cast<double>(batch * seq_len) / seconds : 0.0);
    return 0;
  };
}

}  // namespace mambacpp::cli
