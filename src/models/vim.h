// Vision Mamba (Vim; Zhu et al., ICML 2024, hustvl/Vim): image classification with bidirectional
// Mamba-1 blocks (docs/vision.md). An image is cut into patches (a strided Conv2d, run as one GEMM
// over the unfolded patches), a class token is inserted (in the middle by default), absolute
// position embeddings are added, and `depth` blocks run Add -> RMSNorm -> BiMamba on an fp32
// residual stream; the final Add -> norm gives the class token's features and a linear head the
// logits. The BiMamba mixer ("bimamba v2") projects once (in_proj -> [x | z]), runs the Mamba-1
// conv + selective scan forward with one weight set and over the reversed sequence with a second
// (the `_b` names), sums (or averages, `if_devide_out`) and projects out. Everything is written
// against the same ops as the language models; nothing here touches raw memory.
//
// Vim is not a language model (no tokens, no vocabulary, no recurrent state between calls), so it
// is its own model class beside models::Model rather than a family of it.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::models {

// config.json of a Vim checkpoint folder: the constructor arguments of hustvl/Vim's VisionMamba
// (same names and defaults; docs/vision.md lists them), `"model_type": "vim"`.
struct VimConfig {
  // patch embedding
  int64_t img_size = 224, patch_size = 16, stride = 16, channels = 3;
  // blocks
  int64_t embed_dim = 192, depth = 24, d_state = 16, d_conv = 4, dt_rank = 0 /* 0 = auto */;
  double expand = 2;
  bool conv_bias = true, bias = false;
  std::string bimamba_type = "v2";  // "v2" (bidirectional) or "none" (forward only)
  bool if_devide_out = true;        // average the two directions (else sum); alias if_divide_out
  bool rms_norm = true;             // RMSNorm, else LayerNorm (with bias)
  double norm_epsilon = 1e-5;
  // tokens and head
  bool if_cls_token = true, use_middle_cls_token = true, use_double_cls_token = false;
  bool if_abs_pos_embed = true;
  std::string final_pool_type = "mean";  // without a class token: "mean" or "none" (last token)
  int64_t num_classes = 1000;            // 0: no head, forward returns the features
  // evaluation transform (timm: resize = img_size / crop_pct 0.875, ImageNet mean/std)
  int64_t resize = 0, crop = 0;  // 0 = derived
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f}, std = {0.229f, 0.224f, 0.225f};
  std::vector<std::string> class_names;  // id2label, or classes.txt in the folder; may be empty

  // derived (finalize)
  int64_t d_inner = 0, grid_h = 0, grid_w = 0, num_patches = 0, num_tokens = 0, seq_len = 0;
  std::vector<int64_t> cls_positions;  // where the class token(s) sit in the sequence

  // Validates every field and fills the derived ones; errors name `source` and the key.
  void finalize(const std::string& source);
  nlohmann::json to_json() const;
};

// Parses config.json's contents (`source` names it in errors).
VimConfig parse_vim_config(const nlohmann::json& j, const std::string& source);

// The weights of one direction of the mixer: conv1d, x_proj, dt_proj, A_log, D (Mamba-1's).
struct VimBranch {
  Tensor conv1d_weight, conv1d_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D;
  Tensor A, conv_w;  // derived: −exp(A_log); conv weight as [d_inner, d_conv]
};

// One BiMamba mixer ("bimamba v2"). Public so that tests can check it against a naive reference.
struct VimMixer {
  int64_t d_model = 0, d_inner = 0, d_state = 0, d_conv = 0, dt_rank = 0;
  bool bidirectional = true, divide_out = true;
  Tensor in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias;
  VimBranch fwd, bwd;

  // Derived constants after the weights are filled or moved.
  void prepare(ops::Exec& exec);
  // u: [batch, seq_len, d_model] -> [batch, seq_len, d_model], each sequence from a zero state.
  Tensor forward(ops::Exec& exec, const Tensor& u) const;
};

struct VimParam {
  std::string name;  // the state-dict name of hustvl/Vim ("layers.3.mixer.x_proj_b.weight")
  Tensor* tensor;
  Shape shape;
  bool gemm = false;  // a GEMM weight (bf16 / f16 storage under set_matmul_dtype)
};

class VimModel {
public:
  // `path`: a folder with config.json and model.safetensors (or one .pth / .pt / .bin
  // torch.save file, the state dict possibly under "model"), or such a checkpoint file with
  // config.json beside it. Names, shapes and dtypes are checked; a tensor the config does not
  // expect is an error too (it means the config and the checkpoint disagree).
  static VimModel load(const std::string& path);
  // Random weights (bench, tests): small uniform values, A_log = ln(1..d_state), D = 1.
  static VimModel random(const VimConfig& config, uint64_t seed);
  // Writes config.json and model.safetensors into `dir` atomically.
  void save(const std::string& dir) const;

  const VimConfig& config() const { return config_; }
  void to(Device device);
  Device device() const { return device_; }
  // bf16 / f16 GEMM weights (CUDA only), as models::Model::set_matmul_dtype.
  void set_matmul_dtype(DType dtype);
  int64_t num_params() const;

  // images: [batch, channels, img_size, img_size] f32 (any device; moved to the model's) ->
  // logits [batch, num_classes] (features [batch, embed_dim] when num_classes is 0), on the
  // model's device.
  Tensor forward(ops::Exec& exec, const Tensor& images) const;
  // The pooled, normed features [batch, embed_dim] (before the head).
  Tensor features(ops::Exec& exec, const Tensor& images) const;

  void visit_params(const std::function<void(const VimParam&)>& fn);
  const VimMixer& mixer(int64_t layer) const { return layers_[static_cast<size_t>(layer)].mixer; }

private:
  struct Layer {
    Tensor norm_weight, norm_bias;
    VimMixer mixer;
  };
  void init_layout();
  void prepare();
  Tensor patch_embed(ops::Exec& exec, const Tensor& images) const;

  VimConfig config_;
  Device device_ = Device::cpu;
  DType matmul_dtype_ = DType::f32;
  Tensor patch_weight, patch_bias, cls_token, cls_token_head, cls_token_tail, pos_embed;
  std::vector<Layer> layers_;
  Tensor norm_f_weight, norm_f_bias, head_weight, head_bias;
};

}  // namespace mamba::models
