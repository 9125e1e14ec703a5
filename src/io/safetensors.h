// Safetensors checkpoints: read (memory-mapped, one file or a sharded index) and write.
// `get` returns zero-copy views into a read-only mapping (never write through them);
// `get_f32` returns an owned f32 copy. Every malformed input throws `Error` naming the file.
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mamba::io {

struct TensorInfo {
  std::string name;
  std::string stored_dtype;    // as written in the header: "BF16", "F64", ...
  std::optional<DType> dtype;  // nullopt: a valid safetensors dtype we cannot load (F64, I8, ...)
  Shape shape;
  std::string file;   // the .safetensors file holding it
  size_t offset = 0;  // absolute byte offset in that file
  size_t bytes = 0;
};

// Usage:
//   auto st = mamba::io::SafeTensors::open("ckpt/");  // model.safetensors or the .index.json
//   Tensor a_log = st.get_f32("backbone.layers.0.mixer.A_log", {n_heads});  // [n_heads]
class SafeTensors {
public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding either
  // (model.safetensors is preferred when both exist). Every file is validated at open;
  // a tensor of an unsupported dtype (F64, I8, ...) only throws when it is requested.
  // Fallback: a directory with neither opens pytorch_model.bin or pytorch_model.bin.index.json,
  // and a .bin/.pt/.pth file (or shard) is read as a torch.save checkpoint (torch_pickle.h).
  static SafeTensors open(const std::string& path);

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  std::vector<std::string> names() const;  // sorted
  size_t size() const { return tensors_.size(); }
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The stored dtype and shape: a view of the mapping when the data is aligned for its
  // dtype, else a copy. Throws not_found / unsupported.
  Tensor get(const std::string& name) const;
  // An owned, contiguous f32 CPU tensor converted from F32/BF16/F16; the second form also
  // throws ErrorCode::shape unless the stored shape equals `expected`.
  Tensor get_f32(const std::string& name) const;
  Tensor get_f32(const std::string& name, const Shape& expected) const;

private:
  const TensorInfo& lookup(const std::string& name) const;
  const std::shared_ptr<Buffer>& data_of(const TensorInfo& info) const;

  std::string path_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::shared_ptr<Buffer>> files_;  // file path -> whole-file mapping
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::shared_ptr<Buffer>> torch_data_;  // tensor -> its bytes, for torch.save files
};

// Writes F32/BF16/F16/I64/I32/U8 tensors (any device or layout; copied as needed) in the
// given order, atomically. Names must be unique, non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mamba::io
