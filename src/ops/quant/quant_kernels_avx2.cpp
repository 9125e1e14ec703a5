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

// The next `lines` cache lines 2 KiB past p: a GEMV walks its rows in order, and the hardware
// prefetchers alone (they stop at 4 KiB pages) fed one core ~5.5 GB/s from DRAM (the AVX-512
// kernels do the same; Q4_K rows from DRAM took 19.5 instead of 28 ns per block here).
MAMBA_AVX2 inline void prefetch_ahead(const void* p, int lines) {
  const char* ahead = static_cast<const char*>(p) + 2048;
  for (int l = 0; l < lines; ++l) _mm_prefetch(ahead + 64 * l, _MM_HINT_T0);
}

// A row's blocks through `step`, alternating two accumulators (two independent FMA chains).
template <typename Block, __m256 (*step)(const Block&, const ActBlock&, __m256)>
MAMBA_AVX2 float dot_blocks(const void* w, const ActBlock* x, int64_t n_blocks) {
  const auto* blk = static_cast<const Block*>(w);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    prefetch_ahead(blk + b, 2);
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

// A Q4_K block's 6-bit scales as int16 in both 128-bit lanes; q4k_scale16(v, s) spreads sub-block
// s's over the 16 lanes.
MAMBA_AVX2 inline __m256i q4k_scales16(uint64_t sc) {
  return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc))));
}
MAMBA_AVX2 inline __m256i q4k_scale16(__m256i v, int s) {
  return _mm256_shuffle_epi8(v, _mm256_set1_epi16(static_cast<short>(((2 * s + 1) << 8) | (2 * s))));
}

// Σ sc·nibble·q of sub-blocks 2c (low nibbles of chunk c) and 2c + 1 (high), plus acc: the pair
// sums of vpmaddubsw (≤ 2·15·127) times the scale (vpmaddwd) into 8 int32 lanes.
MAMBA_AVX2 inline __m256i q4k_chunk(__m256i acc, __m256i bytes, const int8_t* xq, __m256i sc16, int c) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i lo =
      _mm256_maddubs_epi16(_mm256_and_si256(bytes, low4),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + act_k_offset(2 * c))));
  const __m256i hi = _mm256_maddubs_epi16(
      _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + act_k_offset(2 * c + 1))));
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(lo, q4k_scale16(sc16, 2 * c)),
                                                _mm256_madd_epi16(hi, q4k_scale16(sc16, 2 * c + 1))));
}

// Per Q4_K block: its 8 sub-blocks' scaled integer sums, one conversion and one FMA by d·d_x;
// the mins' Σ m·Σx in integers, by dmin·d_x.
MAMBA_AVX2 float dot_q4_k(const void* w, const ActBlockK* x, int64_t n_super) {
  const auto* blk = static_cast<const BlockQ4_K*>(w);
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_min = _mm_setzero_ps();
  for (int64_t b = 0; b < n_super; ++b) {
    prefetch_ahead(blk + b, 3);
    uint64_t sc, m;
    q4k_scale_bytes(blk[b].scales, sc, m);
    const __m256i sc16 = q4k_scales16(sc);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int c = 0; c < 4; c += 2) {
      s0 = q4k_chunk(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b].q + 32 * c)), x[b].q,
                     sc16, c);
      s1 = q4k_chunk(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b].q + 32 * c + 32)), x[b].q,
                     sc16, c + 1);
    }
    const __m128i mins = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(m))),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].sum)));
    const float dx = x[b].d;
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(h2f(blk[b].d) * dx),
                          acc);
    acc_min = _mm_fmadd_ps(_mm_cvtepi32_ps(mins), _mm_set1_ps(h2f(blk[b].dmin) * dx), acc_min);
  }
  const __m128 m2 = _mm_add_ps(acc_min, _mm_movehl_ps(acc_min, acc_min));
  return hsum(acc) - _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
}

// bf16 is the top half of an f32: widen to 32 bits and shift.
MAMBA_AVX2 float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (i % 32 == 0) prefetch_ahead(w + i, 1);
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

const Kernels kernels_avx2 = {.q8_0 = dot_q8_0,
                              .q4_0 = dot_q4_0,
                              .q4_k = dot_q4_k,
                              .bf16 = dot_bf16,
                              .q8_0_tile = tile_q8_0,
                              .q4_0_tile = tile_q4_0,
                              .q4_k_tile = tile_q4_k};

}  // namespace mamba::ops::quant
