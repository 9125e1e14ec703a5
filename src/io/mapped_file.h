// A read-only memory map of a regular file as a Buffer (tensors borrowing it keep it mapped),
// shared by the safetensors and torch.save readers.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace mamba::io {

// Maps `path` (a regular file, not a FIFO or a directory). A file shorter than `min_size` bytes
// (or empty) is an Error(parse) "<path>: file is N bytes, <too_short>"; open / mmap failures are
// Error(io) naming the path.
std::shared_ptr<Buffer> map_file(const std::string& path, size_t min_size, const std::string& too_short);

}  // namespace mamba::io
