// llama.cpp's block formats (q8_0, q4_0, q4_k; docs/quantization.md): one row at a time, f32 to
// blocks and back. The layouts are the GGUF file's bytes, so a mapped tensor is used as it is;
// the quantizers are our own round-to-nearest ones (not llama.cpp's search), the dequantizers
// are exact by definition of the formats.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace mamba {

// Byte layouts, little-endian, no padding (static_asserts in quant_blocks.cpp).
struct BlockQ8_0 {  // 32 values: x = d · q
  uint16_t d;       // f16 scale
  int8_t q[32];
};
struct BlockQ4_0 {  // 32 values: x = d · (nibble − 8); byte j holds values j (low) and j + 16 (high)
  uint16_t d;       // f16 scale
  uint8_t q[16];
};
struct BlockQ4_K {     // 256 values in 8 sub-blocks of 32: x = d·sc[s]·nibble − dmin·m[s]
  uint16_t d;          // f16 scale of the 6-bit sub-block scales
  uint16_t dmin;       // f16 scale of the 6-bit sub-block mins
  uint8_t scales[12];  // sc[8], m[8] packed in 6 bits (q4k_scale_min)
  uint8_t q[128];      // 4 chunks of 64 values: byte l of a chunk holds value l (low) and l + 32 (high)
};

struct BlockQ6_K {    // 256 values in 16 groups of 16: x = d · scales[g] · (q − 32), q 6 bits
  uint8_t ql[128];    // low 4 bits: 2 halves of 128 values; byte l of a half: values l, l + 64 (hi nibble)
  uint8_t qh[64];     // high 2 bits: byte l of a half holds values l, l + 32, l + 64, l + 96
  int8_t scales[16];  // per 16 values
  uint16_t d;         // f16
};

// The 6-bit scale and min of sub-block s (0..7) of a q4_k block.
inline void q4k_scale_min(const uint8_t* scales, int s, uint8_t& sc, uint8_t& m) {
  if (s < 4) {
    sc = scales[s] & 63;
    m = scales[s + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((scales[s + 4] & 0xF) | ((scales[s - 4] >> 6) << 4));
    m = static_cast<uint8_t>((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
  }
}

// n values (a multiple of dtype_block_values(dtype)) of `x` into dtype_bytes(dtype, n) bytes at
// `out`, and back. dtype: q8_0, q4_0, q4_k, bf16, f16 or f32 (and q6_k, read only).
void quantize_row(DType dtype, const float* x, int64_t n, void* out);
void dequantize_row(DType dtype, const void* in, int64_t n, float* y);

}  // namespace mamba
