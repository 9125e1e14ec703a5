// The per-ISA dot products behind quant_linear (internal to ops/quant): one weight row against
// one quantized activation row. Each ISA's file defines its table; quant_linear.cpp picks one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mamba::ops {
enum class QuantIsa;  // quant_linear.h
}  // namespace mamba::ops

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

// A Q4_K block's 8 six-bit sub-block scales and mins (q4k_scale_min) as bytes, sub-block s in
// byte s (little-endian: the SIMD kernels' unpacking): the 12 packed bytes rearranged in 32-bit
// words, the top 2 bits of the last four fields in the first 8 bytes.
inline void q4k_scale_bytes(const uint8_t* scales, uint64_t& sc, uint64_t& m) {
  uint32_t u[3];
  std::memcpy(u, scales, 12);
  constexpr uint32_t k6 = 0x3f3f3f3f, k4 = 0x0f0f0f0f, k2 = 0x03030303;
  sc = (u[0] & k6) | static_cast<uint64_t>((u[2] & k4) | (((u[0] >> 6) & k2) << 4)) << 32;
  m = (u[1] & k6) | static_cast<uint64_t>(((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4)) << 32;
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

// 256 activations quantized to int8 with one scale (Q4_K's activation side, like llama.cpp's
// Q8_K): x ≈ d · q, so a Q4_K block's 8 sub-block products add up in integers (each times its
// 6-bit scale) before one conversion to f32. The 32-value sub-blocks are stored in the order
// 0 2 1 3 4 6 5 7 (act_k_offset): 64 bytes of a Q4_K block (its chunks 2g and 2g + 1) hold
// sub-blocks 4g and 4g + 2 in their low nibbles and 4g + 1, 4g + 3 in their high, so each half
// meets 64 contiguous activation bytes (64-byte aligned: a 512-bit load across two cache lines
// costs two). sum: Σ q per sub-block; dsum: d·sum (the mins' term).
struct alignas(64) ActBlockK {
  int8_t q[256];
  float d;
  int16_t sum[8];
  float dsum[8];
};
// Where sub-block s (0..7) starts in ActBlockK::q.
constexpr int act_k_offset(int s) {
  return 32 * ((s & 4) | ((s & 1) << 1) | ((s >> 1) & 1));
}

// Q4_K tiles: as TileFn over ActBlockK rows (x_stride in blocks of 256); n_super blocks of 256.
using TileKFn = void (*)(const uint8_t* w, size_t w_stride, const ActBlockK* x, int64_t x_stride,
                         int64_t n_super, float* y, int64_t y_stride);

// The activation side of a 512-bit prefill step, prepared once per activation row (instead of once
// per tile): blocks 2p and 2p + 1 of the row (the second zero past the end) in the kernel's lane
// order, the weight format's integer offset per 32-bit lane, and the two scales spread over the
// lanes. 192 bytes for 64 values.
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

// n_blocks: the row's values / 32; n_super: its values / 256. Weight rows are the GGUF bytes of one row.
struct Kernels {
  float (*q8_0)(const void* w, const ActBlock* x, int64_t n_blocks);
  float (*q4_0)(const void* w, const ActBlock* x, int64_t n_blocks);
  float (*q4_k)(const void* w, const ActBlockK* x, int64_t n_super);
  float (*bf16)(const uint16_t* w, const float* x, int64_t n);
  TileFn q8_0_tile = nullptr, q4_0_tile = nullptr;  // null: row by row
  TileKFn q4_k_tile = nullptr;
  // quantize_activations / quantize_activations_k with the same result, bit for bit (null: those).
  void (*quantize)(const float* x, int64_t n, ActBlock* out) = nullptr;
  void (*quantize_k)(const float* x, int64_t n, ActBlockK* out) = nullptr;
  // Prefill on packed activations, used instead of the *_tile where set.
  PackFn q8_0_pack = nullptr, q4_0_pack = nullptr;
  PackedTileFn q8_0_ptile = nullptr, q4_0_ptile = nullptr;
};

extern const Kernels kernels_scalar;
extern const Kernels kernels_avx2;
extern const Kernels kernels_avx512;
extern const Kernels kernels_avx512_vnni;
// The table of an ISA (the scalar one where this build has no kernels for it).
const Kernels& kernels_for(QuantIsa isa);

#if defined(__x86_64__)
// QuantIsa::amx (quant_amx.cpp): whether the CPU has AMX-INT8 and the kernel granted this process
// the tile state (asked once).
bool amx_int8_usable();
// Q4_K prefill on AMX: y[r·out + o] = row o of w (row_bytes apart, n_super blocks) · x row r (no
// bias), for r < rows, o < out.
void q4_k_gemm_amx(const uint8_t* w, size_t row_bytes, int64_t out, const ActBlockK* x, int64_t rows,
                   int64_t n_super, float* y);
#endif

// x (n values, a multiple of 32) -> n / 32 blocks.
void quantize_activations(const float* x, int64_t n, ActBlock* out);
// x (n values, a multiple of 256) -> n / 256 blocks.
void quantize_activations_k(const float* x, int64_t n, ActBlockK* out);

}  // namespace mamba::ops::quant
