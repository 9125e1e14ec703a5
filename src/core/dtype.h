// Element types and the scalar conversions between them. bf16/f16 are storage formats:
// compute is done in f32 after conversion (SPEC.md §0: fp32 math with listed rounding points).
// q8_0 / q4_0 / q4_k / q6_k are llama.cpp's block formats (docs/quantization.md): weights only, stored
// as blocks of 32 or 256 values along the last dimension, read by the quantized linear kernels
// (ops/quant; q6_k is only read and converted to f32); dtype_size is undefined for them (use dtype_bytes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace mamba {

enum class DType { f32, bf16, f16, i64, i32, u8, q8_0, q4_0, q4_k, q6_k };

size_t dtype_size(DType dtype);  // bytes per element; aborts for block formats
// Block formats: values per block (32 or 256) and bytes per block; 1 and dtype_size otherwise.
bool dtype_is_block(DType dtype);
int64_t dtype_block_values(DType dtype);
size_t dtype_block_bytes(DType dtype);
// Bytes of `numel` values (a whole number of blocks for block formats, else an abort).
size_t dtype_bytes(DType dtype, int64_t numel);
const char* dtype_name(DType dtype);  // "f32", "bf16", ...

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, NaN preserved (as PyTorch's float -> bfloat16 conversion).
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Rounds a float through bf16 / f16 and back (used where the reference rounds).
inline float round_bf16(float f) {
  return bf16_to_f32(f32_to_bf16(f));
}

}  // namespace mamba
