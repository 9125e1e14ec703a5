// NumPy .npy files (the fixtures' inputs and reference outputs): read versions 1.0-3.0 of
// little-endian C-order arrays, write version 1.0. Errors name the file.
#pragma once
#include <string>

#include "core/tensor.h"

namespace mamba::io {

// '<f4' -> f32, '<f8' -> f32 (converted), '<f2' -> f16, '<i8' -> i64, '<i4' -> i32, '|u1' -> u8.
// Throws Error (parse, unsupported, io) for anything else or a malformed/truncated file.
Tensor read_npy(const std::string& path);

// f32 -> '<f4', i64 -> '<i8', i32 -> '<i4', f16 -> '<f2', u8 -> '|u1' (bf16 has no NumPy
// dtype: unsupported). Any layout or device; written atomically.
void write_npy(const std::string& path, const Tensor& tensor);

}  // namespace mamba::io
