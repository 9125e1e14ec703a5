// PyTorch checkpoints (`pytorch_model.bin`, the zip format torch.save writes since 1.6) read
// without executing anything: a stored zip archive `<archive>/data.pkl` (the pickled state
// dict), `<archive>/data/<key>` (raw little-endian storages) and `<archive>/byteorder`.
// The pickle goes through a restricted unpickler that knows only the opcodes torch.save emits
// and only the globals it needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter, torch.<Type>Storage); every other global or opcode
// (os.system, builtins.eval, INST, OBJ, NEWOBJ, ...) is refused with an Error naming the file.
// Everything is bounds-checked: a malformed file throws Error, it never crashes.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mamba::io {

struct TorchTensor {
  std::string name;
  std::string stored_dtype;    // safetensors' names: "F32", "BF16", "F16", "F64", "I64", "I32", ...
  std::optional<DType> dtype;  // nullopt: a dtype we cannot load (F64, I16, I8, BOOL)
  Shape shape;
  // Exactly `bytes` bytes, contiguous row-major: a view of the file mapping when the tensor is
  // a dense block of its storage (shared by tied weights), else an owned copy of the view.
  std::shared_ptr<Buffer> data;
  size_t bytes = 0;
};

struct TorchCheckpoint {
  std::string file;
  std::vector<TorchTensor> tensors;  // in pickle order; names unique
};

// Reads a torch.save zip checkpoint. The object may be the state dict itself or a dict holding
// it under "state_dict" or "model"; entries that are not tensors are skipped.
TorchCheckpoint read_torch_checkpoint(const std::string& path);
// The same from bytes in memory (`file` names them in errors).
TorchCheckpoint read_torch_checkpoint(std::shared_ptr<Buffer> bytes, const std::string& file);

}  // namespace mamba::io
