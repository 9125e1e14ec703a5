// AVX2 + FMA + F16C dot products for quant_linear (quant_kernels.h), compiled for those
// extensions only (target attributes) and called only when the CPU has them. One 32-value block
// per step: unsigned × signed byte products (vpmaddubsw) summed to int32 lanes, scaled in f32;
// two accumulators in the block loops so the FMA latency is not the bound.
#include <immintrin.h>

#include "core/quant_blocks.h"
#include "ops/quant/quant_kernels.h"

#define MAMBA_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace mamba::ops::quant {
namespace {

MAMBA_AVX2 inline float h2f(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

MAMBA_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Σ a·b over 32 bytes, a unsigned (< 128 where pairs could saturate), b signed, as 8 int32 lanes.
MAMBA_AVX2 inline __m256i dot_u8s8(__m256i a, __m256i b) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
}

MAMBA_AVX2 inline __m256 q8_0_step(const BlockQ8_0& w, const ActBlock& x, __m256 acc) {
  const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.q));
  const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q));
  // |w| · (x with w's sign): the unsigned operand stays ≤ 128, so no pair saturates.
  const __m256i p = dot_u8s8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w.d) * x.d), acc);
}

// A row's blocks through `step`, alternating two accumulators (two independent FMA chains).
template <typename Block, __m256 (*step)(const Block&, const ActBlock&, __m256)>
MAMBA_AVX2 float dot_blocks(const void* w, const ActBlock* x, int64_t n_blocks) {
  const auto* blk = static_cast<const Block*>(w);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    acc0 = step(blk[b], x[b], acc0);
    acc1 = step(blk[b + 1], x[b + 1], acc1);
  }
  if (b < n_blocks) acc0 = step(blk[b], x[b], acc0);
  return hsum(_mm256_add_ps(acc0, acc1));
}

MAMBA_AVX2 float dot_q8_0(const void* w, const ActBlock* x, int64_t n_blocks) {
  return dot_blocks<BlockQ8_0, q8_0_step>(w, x, n_blocks);
}

MAMBA_AVX2 inline __m256 q4_0_step(const BlockQ4_0& w, const ActBlock& x, __m256 acc) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.q));
  const __m256i nib =
      _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), _mm256_set1_epi8(0x0F));
  const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q));
  // Σ (n − 8)·x in 16 bits (|pair sums| ≤ 3840), then to 32.
  const __m256i p = _mm256_madd_epi16(
      _mm256_sub_epi16(_mm256_maddubs_epi16(nib, xq), _mm256_maddubs_epi16(_mm256_set1_epi8(8), xq)),
      _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w.d) * x.d), acc);
}

// Nibbles 0..15 as unsigned bytes: bytes j → values j (low nibble) and j + 16 (high nibble).
MAMBA_AVX2 float dot_q4_0(const void* w, const ActBlock* x, int64_t n_blocks) {
  return dot_blocks<BlockQ4_0, q4_0_step>(w, x, n_blocks);
}

// 32 bytes of a q4_k block hold two sub-blocks: the low nibbles one, the high nibbles the next.
MAMBA_AVX2 float dot_q4_k(const void* w, const ActBlock* x, int64_t n_blocks) {
  const auto* blk = static_cast<const BlockQ4_K*>(w);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float offset = 0.0f;
  for (int64_t b = 0; b < n_blocks / 8; ++b, x += 8) {
    const float d = h2f(blk[b].d), dmin = h2f(blk[b].dmin);
    for (int c = 0; c < 4; ++c) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b].q + 32 * c));
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * c + h;
        uint8_t sc, m;
        q4k_scale_min(blk[b].scales, s, sc, m);
        const __m256i nib = _mm256_and_si256(h == 0 ? bytes : _mm256_srli_epi16(bytes, 4), low4);
        const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[s].q));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(nib, xq)),
                              _mm256_set1_ps(d * static_cast<float>(sc) * x[s].d), acc);
        offset += dmin * static_cast<float>(m) * x[s].d * static_cast<float>(x[s].sum);
      }
    }
  }
  return hsum(acc) - offset;
}

// bf16 is the top half of an f32: widen to 32 bits and shift.
MAMBA_AVX2 float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i w0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    const __m256i w1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8)));
    acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(w1, 16)), _mm256_loadu_ps(x + i + 8), acc1);
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += bf16_to_f32(w[i]) * x[i];
  return hsum(_mm256_add_ps(acc0, acc1)) + tail;
}

}  // namespace
}  // namespace mamba::ops::quant

#define MAMBA_TILE_TARGET MAMBA_AVX2
#define MAMBA_TILE_DOT(a, b) dot_u8s8(a, b)
#include "ops/quant/quant_tile.inc"

namespace mamba::ops::quant {

const Kernels kernels_avx2 = {dot_q8_0, dot_q4_0, dot_q4_k, dot_bf16, tile_q8_0, tile_q4_0, tile_q4_k};

}  // namespace mamba::ops::quant
