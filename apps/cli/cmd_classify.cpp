// `mambacpp classify`: image classification with a Vision Mamba (Vim) checkpoint (docs/vision.md).
//   classify -m DIR --image F.jpg [--top-k 5]     top-k classes with probabilities
//   classify -m DIR --dir FOLDER [--batch 64]     every PNG/JPEG in FOLDER, batched; images/s
//   classify --bench [--shape tiny|small|base]    random weights at 224×224, images/s at batch 1 / 64
#include <mambacpp/mambacpp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "commands.h"
#include "flags.h"

namespace mambacpp::cli {

namespace {
struct ClassifyArgs {
  std::string model, dir, output, shape = "tiny";
  std::vector<std::string> images;
  int64_t top_k = 5, batch = 64, iters = 3;
  std::vector<int64_t> bench_batches = {1, 64};
  bool bench = false;
  int threads = 0;
  std::string device = "cpu", dtype = "f32";
  std::vector<std::string> kernels;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<std::string> image_files(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw_error(ErrorCode::not_found, dir, ": not a directory");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (e.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg"))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) throw_error(ErrorCode::not_found, dir, ": no .png, .jpg or .jpeg files");
  return out;
}

// Preprocessed images [n, 3, crop, crop] for `files[begin, end)`.
Tensor load_batch(const std::vector<std::string>& files, size_t begin, size_t end, const VimModel& model) {
  const VimInfo& c = model.info();
  const int64_t n = static_cast<int64_t>(end - begin), plane = 3 * c.crop * c.crop;
  if (c.channels != 3)
    throw_error(ErrorCode::unsupported, "classify: images are RGB, the model takes ", c.channels,
                " channels");
  Tensor batch = Tensor::empty({n, 3, c.crop, c.crop});
  for (size_t i = begin; i < end; ++i) {
    const Tensor x = model.preprocess(files[i]);
    std::copy(x.f32(), x.f32() + plane, batch.f32() + static_cast<int64_t>(i - begin) * plane);
  }
  return batch;
}

std::vector<double> softmax(const float* logits, int64_t n) {
  std::vector<double> p(static_cast<size_t>(n));
  const double mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += p[static_cast<size_t>(i)] = std::exp(logits[i] - mx);
  for (double& v : p) v /= sum;
  return p;
}

// "  name" when the checkpoint folder names its classes, else nothing.
std::string class_name(const VimInfo& c, int64_t i) {
  return i < static_cast<int64_t>(c.class_names.size()) ? "  " + c.class_names[static_cast<size_t>(i)] : "";
}

int run_bench(const ClassifyArgs& a) {
  VimModel model = VimModel::random(a.shape == "tiny"    ? 192
                                    : a.shape == "small" ? 384
                                                         : 768,
                                    1, "bench shape " + a.shape);
  const VimInfo& c = model.info();
  model.to(parse_device(a.device));
  model.set_matmul_dtype(matmul_dtype(a.dtype));
  Context exec(model.device(), kernel_plan(a.kernels));
  std::printf("Vim-%s (embed %lld, depth %lld, %lld tokens, %.1fM params) on %s, %s, %d threads\n",
              a.shape.c_str(), static_cast<long long>(c.embed_dim), static_cast<long long>(c.depth),
              static_cast<long long>(c.seq_len), static_cast<double>(model.num_params()) / 1e6,
              device_description(model.device()).c_str(), a.dtype.c_str(), num_threads());
  for (int64_t b : a.bench_batches) {
    const Tensor x = Tensor::full({b, 3, c.img_size, c.img_size}, 0.1f).to(model.device());
    model.forward(exec, x);  // warm-up (allocator, BLAS, CUDA context)
    device_synchronize(model.device());
    std::vector<double> times;
    for (int64_t i = 0; i < a.iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const Tensor y = model.forward(exec, x);
      device_synchronize(model.device());
      times.push_back(seconds_since(t0));
    }
    std::sort(times.begin(), times.end());
    const double med = times[times.size() / 2];
    std::printf("  batch %4lld: %8.2f images/s  (median of %lld: %.4f s a batch)\n",
                static_cast<long long>(b), static_cast<double>(b) / med, static_cast<long long>(a.iters),
                med);
  }
  return 0;
}
}  // namespace

Runner add_classify(CLI::App& app) {
  auto a = std::make_shared<ClassifyArgs>();
  app.add_option("-m,--model", a->model,
                 "Vim folder (config.json + model.safetensors or a .pth), or the .pth");
  app.add_option("--image", a->images, "a PNG or JPEG image (repeatable)");
  app.add_option("--dir", a->dir, "classify every .png/.jpg/.jpeg in this folder, in batches");
  app.add_option("--top-k", a->top_k, "classes to print per image (default 5)")->check(int_range(1, 100000));
  app.add_option("--batch", a->batch, "images per forward pass with --dir (default 64)")
      ->check(int_range(1, 4096));
  app.add_option("-o,--output", a->output, "also write the logits [n_images, num_classes] as float32 .npy");
  app.add_flag("--bench", a->bench, "throughput on random weights (no images; see --shape, --bench-batch)");
  app.add_option("--shape", a->shape,
                 "bench: tiny (192), small (384) or base (768); depth 24, patch 16, 224×224")
      ->check(CLI::IsMember({"tiny", "small", "base"}));
  app.add_option("--bench-batch", a->bench_batches, "bench: batch sizes (default 1 64)")
      ->check(int_range(1, 4096));
  app.add_option("--iters", a->iters, "bench: timed passes per batch size (default 3)")
      ->check(int_range(1, 1000));
  add_threads_option(app, a->threads);
  add_device_option(app, a->device, "cpu or cuda (default cpu)");
  add_dtype_option(app, a->dtype);
  add_kernel_option(app, a->kernels);
  return [a]() {
    check_dtype_device(a->dtype, a->device);
    set_num_threads(a->threads);
    if (a->bench) return run_bench(*a);
    if (a->model.empty())
      throw_error(ErrorCode::invalid_argument, "classify: --model is required (or --bench)");
    if (a->images.empty() == a->dir.empty())
      throw_error(ErrorCode::invalid_argument, "classify: give --image FILE (repeatable) or --dir FOLDER");
    if (!a->output.empty()) check_output_path("--output", a->output);
    VimModel model = VimModel::load(a->model);
    model.to(parse_device(a->device));
    model.set_matmul_dtype(matmul_dtype(a->dtype));
    const VimInfo& c = model.info();
    if (c.num_classes == 0)
      throw_error(ErrorCode::unsupported, a->model, ": the model has no head (num_classes 0)");
    const std::vector<std::string> files = a->dir.empty() ? a->images : image_files(a->dir);
    const size_t step = a->dir.empty() ? files.size() : static_cast<size_t>(a->batch);
    Context exec(model.device(), kernel_plan(a->kernels));
    Tensor all = Tensor::empty({static_cast<int64_t>(files.size()), c.num_classes});
    double t_load = 0, t_model = 0;
    for (size_t begin = 0; begin < files.size(); begin += step) {
      const size_t end = std::min(files.size(), begin + step);
      auto t0 = std::chrono::steady_clock::now();
      const Tensor x = load_batch(files, begin, end, model);
      t_load += seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      const Tensor logits = model.forward(exec, x).to(Device::cpu);
      t_model += seconds_since(t0);
      for (size_t i = begin; i < end; ++i) {
        const float* row = logits.f32() + static_cast<int64_t>(i - begin) * c.num_classes;
        std::copy(row, row + c.num_classes, all.f32() + static_cast<int64_t>(i) * c.num_classes);
        const std::vector<double> p = softmax(row, c.num_classes);
        std::vector<int64_t> order(p.size());
        std::iota(order.begin(), order.end(), 0);
        const auto k = static_cast<size_t>(std::min<int64_t>(a->top_k, c.num_classes));
        std::partial_sort(
            order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
            [&](int64_t l, int64_t r) { return p[static_cast<size_t>(l)] > p[static_cast<size_t>(r)]; });
        if (a->dir.empty()) {
          std::printf("%s\n", files[i].c_str());
          for (size_t j = 0; j < k; ++j)
            std::printf("  %zu. class %lld  p=%.4f%s\n", j + 1, static_cast<long long>(order[j]),
                        p[static_cast<size_t>(order[j])], class_name(c, order[j]).c_str());
        } else {
          const std::string name = class_name(c, order[0]);  // "  name" or empty
          std::printf("%s\t%lld\t%.4f%s%s\n", files[i].c_str(), static_cast<long long>(order[0]),
                      p[static_cast<size_t>(order[0])], name.empty() ? "" : "\t",
                      name.empty() ? "" : name.c_str() + 2);
        }
      }
    }
    if (!a->output.empty()) write_npy(a->output, all);
    const double n = static_cast<double>(files.size());
    std::fprintf(
        stderr,
        "classify: %zu images, %.1f images/s (decode + preprocess %.3f s, model %.3f s = %.1f images/s "
        "on %s)\n",
        files.size(), n / std::max(t_load + t_model, 1e-9), t_load, t_model, n / std::max(t_model, 1e-9),
        device_description(model.device()).c_str());
    return 0;
  };
}

}  // namespace mambacpp::cli
