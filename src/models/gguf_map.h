// Where each of our parameters sits in a llama.cpp GGUF (names and transforms of its
// convert_hf_to_gguf.py), for the pure architectures (`mamba`, `mamba2`, gguf_model.cpp) and the
// hybrid families (`granitehybrid`, `jamba`, `falcon-h1`, `nemotron_h[_moe]`, gguf_families.cpp).
// Internal to src/models.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "models/config.h"

namespace mamba::models::gguf_map {

// How values move between our parameter and llama.cpp's tensor.
enum class Transform {
  none,     // the same values and shape
  reshape,  // the same values, another shape (conv1d, Mamba-2's A / D / norm)
  neg_exp,  // llama.cpp's ssm_a = −exp(A_log), and A_log = log(−ssm_a) back
  permute,  // q / k rows in llama.cpp's RoPE order (LlamaModel.permute, per head of `heads`)
};

// One tensor of the file holding (part of) our parameter.
struct Part {
  std::string name;
  int64_t expert = -1;  // >= 0: our parameter is tensor[expert] of a stacked [experts, ...] tensor
  int64_t experts = 0;  // the stacked tensor's first dim (writing)
  int half = -1;        // 0 / 1: the tensor is our rows [0, n/2) / [n/2, n) along dim -2 (gate | up)
};

// Rows [begin, end) of our parameter (dim 0) scaled by `factor` when written (Falcon-H1's µP
// multipliers, folded into the weights as its converter does).
struct RowScale {
  int64_t begin, end;
  double factor;
};

struct Param {
  std::vector<Part> parts;
  Transform transform = Transform::none;
  bool quantize = false;  // written in the requested type (linear layers, embedding, experts)
  bool in_place = false;  // loaded as stored when bf16 / block format (a whole 2-D linear weight)
  int64_t heads = 0;      // Transform::permute
  Shape shape;            // the file's shape of a whole tensor (empty: ours)
  std::vector<RowScale> fold;
};

// The pure Mamba architectures (gguf_model.cpp).
std::optional<Param> mamba_param(const ModelConfig& c, const std::string& ours, const Shape& shape);

// ---- Hybrid families (gguf_families.cpp). ----
bool is_family_arch(const std::string& arch);
// llama.cpp's architecture for a family config, or Error(unsupported) naming what it cannot hold.
std::string family_arch(const ModelConfig& c, const std::string& path);
// The metadata llama.cpp's loader reads for `arch` (and ours under mambacpp.*).
void family_metadata(io::GgufWriter& w, const ModelConfig& c, const std::string& arch);
// The tensor(s) of our parameter `ours` of shape `shape`, nullopt for none.
std::optional<Param> family_param(const ModelConfig& c, const std::string& ours, const Shape& shape);
// The family's config.json (HF layout) from a hybrid GGUF's metadata and tensor list.
nlohmann::json family_config_of(const io::GgufFile& g, const std::string& arch);

}  // namespace mamba::models::gguf_map
