// The per-ISA dot products behind quant_linear (internal to ops/quant): one weight row against
// one quantized activation row. Each ISA's file defines its table; quant_linear.cpp picks one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mamba::ops::quant {

// IEEE half -> float without tables or F16C: the exponent and mantissa moved into place and
// rescaled by 2^112 (exact for normals and subnormals); infinities and NaNs by hand.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  uint32_t bits;
  if (em >= 0x7c00u) {
    bits = sign | 0x7f800000u | ((em & 0x3ffu) << 13);
  } else {
    float f;
    const uint32_t shifted = em << 13;
    std::memcpy(&f, &shifted, 4);
    f *= 0x1p112f;
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// 32 activations quantized to int8: x ≈ d · q; sum = Σ q (for the formats' offsets).
struct ActBlock {
  float d;
  int32_t sum;
  int8_t q[32];
};

// Prefill tiles (quant_tile.inc): weight rows w + i·w_stride (bytes), i < kTileW, against
// activation rows x + j·x_stride (blocks), j < kTileX; y[j·y_stride + i] = their dot (no bias).
constexpr int kTileW = 2, kTileX = 4;
using TileFn = void (*)(const uint8_t* w, size_t w_stride, const ActBlock* x, int64_t x_stride,
                        int64_t n_blocks, float* y, int64_t y_stride);

// The activation side of a 512-bit prefill step, prepared once per activation row (instead of once
// per tile): blocks 2p and 2p + 1 of the row (the second zero past the end) in the kernel's lane
// order, the weight format's integer offset per 32-bit lane, and the two scales spread over the
// lanes. 192 bytes for 64 values. Q4_K has no integer offset: `off` of a Q4_K block's first pair
// holds d·Σx of its 8 blocks as f32 in lanes 0-7 (the mins' term), the other pairs' zero.
struct alignas(64) PackedPair {
  int8_t q[64];
  int32_t off[16];
  float d[16];
};
// x (n_blocks blocks) -> (n_blocks + 1) / 2 pairs.
using PackFn = void (*)(const ActBlock* x, int64_t n_blocks, PackedPair* out);
// As TileFn, the activation rows x + j·x_stride (pairs) packed.
using PackedTileFn = void (*)(const uint8_t* w, size_t w_stride, const PackedPair* x, int64_t x_stride,
                              int64_t n_blocks, float* y, int64_t y_stride);

// n_blocks: the row's values / 32. Weight rows are the GGUF bytes of one row.
struct Kernels {
  float (*q8_0)(const void* w, const ActBlock* x, int64_t n_blocks);
  float (*q4_0)(const void* w, const ActBlock* x, int64_t n_blocks);
  float (*q4_k)(const void* w, const ActBlock* x, int64_t n_blocks);
  float (*bf16)(const uint16_t* w, const float* x, int64_t n);
  TileFn q8_0_tile = nullptr, q4_0_tile = nullptr, q4_k_tile = nullptr;  // null: row by row
  // quantize_activations with the same result, bit for bit (null: that one).
  void (*quantize)(const float* x, int64_t n, ActBlock* out) = nullptr;
  // Prefill on packed activations, used instead of the *_tile where set.
  PackFn q8_0_pack = nullptr, q4_0_pack = nullptr, q4_k_pack = nullptr;
  PackedTileFn q8_0_ptile = nullptr, q4_0_ptile = nullptr, q4_k_ptile = nullptr;
};

extern const Kernels kernels_scalar;
extern const Kernels kernels_avx2;
extern const Kernels kernels_avx512;
extern const Kernels kernels_avx512_vnni;

// x (n values, a multiple of 32) -> n / 32 blocks.
void quantize_activations(const float* x, int64_t n, ActBlock* out);

}  // namespace mamba::ops::quant
