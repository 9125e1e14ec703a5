// `mambacpp grads`: the next-token loss of int64 [batch, seq_len] ids (mean cross-entropy over all
// vocabulary columns, the fixtures' loss.json definition) and d loss / d parameter, written as
// safetensors keyed by checkpoint names (a tied head's gradient is under the embedding's name).
// --device cuda runs the forward and backward there (the file is written through the host).
#include <mambacpp/mambacpp.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "commands.h"
#include "flags.h"
#include "generation_flags.h"

namespace mambacpp::cli {

namespace {
struct GradsArgs {
  std::string model, input, output, device = "cpu";
  std::vector<std::string> kernels;
  int threads = 0;
};
}  // namespace

Runner add_grads(CLI::App& app) {
  auto a = std::make_shared<GradsArgs>();
  app.add_option("-m,--model", a->model, "model directory, or a training checkpoint ROOT (its latest step)")
      ->required();
  app.add_option("-i,--input", a->input, "int64 [batch, seq_len] .npy of token ids")->required();
  app.add_option("-o,--output", a->output, ".safetensors of float32 gradients to write")->required();
  add_threads_option(app, a->threads);
  add_device_option(app, a->device, "cpu or cuda (default cpu; f32 either way)");
  add_kernel_option(app, a->kernels);
  return [a]() {
    check_output_path("--output", a->output);
    set_num_threads(a->threads);
    const Device device = parse_device(a->device);
    Model model = Model::load(resolve_model(a->model));
    model.to(device);  // the gradients are allocated beside the parameters
    const Tensor ids = read_npy(a->input);
    if (ids.dim() != 2 || (ids.dtype() != DType::i64 && ids.dtype() != DType::i32))
      throw_error(ErrorCode::shape, a->input, ": expected int64 token ids of shape [batch, seq_len], found ",
                  dtype_name(ids.dtype()), " ", shape_str(ids.shape()));
    const auto t0 = std::chrono::steady_clock::now();
    Context exec(device, kernel_plan(a->kernels));
    Model::Gradients grads = model.loss_and_grads(exec, ids);
    const double loss = grads.loss;
    const std::vector<std::pair<std::string, Tensor>>& tensors = grads.tensors;
    save_safetensors(a->output, tensors, {{"loss", std::to_string(loss)}});
    std::printf("loss %.9g\n", loss);
    std::fflush(stdout);
    int64_t n_values = 0;
    for (const auto& t : tensors) n_values += t.second.numel();
    std::fprintf(stderr, "grads: %lld x %lld tokens, loss %.6g -> %s (%zu tensors, %lld values), %.3f s\n",
                 static_cast<long long>(ids.size(0)), static_cast<long long>(ids.size(1)), loss,
                 a->output.c_str(), tensors.size(), static_cast<long long>(n_values),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  };
}

}  // namespace mambacpp::cli
