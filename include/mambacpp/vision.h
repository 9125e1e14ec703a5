// mambacpp public API: image classification with Vision Mamba (hustvl/Vim) checkpoints
// (docs/vision.md).
#pragma once
#include <mambacpp/common.h>
#include <mambacpp/tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mambacpp {

struct VimInfo {
  int64_t embed_dim = 0, depth = 0, seq_len = 0;  // seq_len: patches plus class tokens
  int64_t img_size = 0;                           // the model's input side
  int64_t resize = 0, crop = 0;                   // preprocessing: shorter side, then center crop
  int64_t channels = 3, num_classes = 0;          // num_classes 0: no head
  std::vector<std::string> class_names;           // may be empty
};

class VimModel {
public:
  static VimModel load(const std::string& path);  // a folder (config.json + weights) or a .pth
  // Random weights of the benchmark shape: depth 24, patch 16, 224x224, embed_dim wide.
  static VimModel random(int64_t embed_dim, uint64_t seed, const std::string& name);
  ~VimModel();
  VimModel(VimModel&& other) noexcept;
  VimModel& operator=(VimModel&& other) noexcept;

  void to(Device device);
  Device device() const;
  void set_matmul_dtype(DType d);
  int64_t num_params() const;
  const VimInfo& info() const;

  // An image file (PNG, JPEG) resized, cropped and normalized as the model expects: f32
  // [3, crop, crop].
  Tensor preprocess(const std::string& image_path) const;
  // images [n, channels, img_size, img_size] -> logits [n, num_classes].
  Tensor forward(Context& ctx, const Tensor& images) const;

  struct Impl;

private:
  explicit VimModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mambacpp
