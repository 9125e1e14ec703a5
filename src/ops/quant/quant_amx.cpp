// Q4_K prefill on AMX-INT8 (QuantIsa::amx): the weights of 16 rows unpacked once per task into
// int8 tiles, the activations of 16 rows transposed once per call into the tiles' VNNI layout,
// and `tdpbusd` (16 × 16 × 64 products per instruction) instead of the AVX-512 tiles, which were
// at their port-0 bound (docs/quantization.md). Exact in integers as the other kernels.
//
// A Q4_K value is d·sc_s·n − dmin·m_s with n ≤ 15 and a 6-bit scale sc_s per 32 values. A tile
// multiply sums 64 products into one int32, across two sub-blocks of different scale, so the
// scale goes into the weight bytes: n·sc_s ≤ 945 is split into its low byte and its high byte
// (≤ 3), two unsigned tiles, and a super-block's integer dot is C_lo + 256·C_hi with no per
// sub-block work. The mins' term Σ_s m_s·Σx_s is an int16 dot in AVX-512 per weight row.
#if defined(__x86_64__)
// GCC 12's own AVX-512 headers warn inside target-attribute functions (quant_kernels_avx512.inc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "core/parallel.h"
#include "core/quant_blocks.h"
#include "ops/quant/quant_kernels.h"

#define MAMBA_AMX_TARGET \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,f16c,amx-tile,amx-int8")))

namespace mamba::ops::quant {

bool amx_int8_usable() {
  static const bool usable = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool tile = (edx & (1u << 24)) != 0, int8 = (edx & (1u << 25)) != 0;
    // Linux hands out the 8 KiB tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA):
    // granted for the whole process, or refused where the kernel or hypervisor lacks it.
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return tile && int8 && syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

namespace {

constexpr int kTile = 16;  // rows of a tile (weight rows, activation rows), and its int32 columns

// The activations of 16 rows × one super-block (256 values) as 4 B tiles of 64 values (row kk:
// values 4kk .. 4kk + 3 of each of the 16 rows, in ActBlockK's order), their per sub-block sums
// as int16 pairs per row (lane m: sum[2p] | sum[2p + 1] << 16) and scales. Rows past the end 0.
struct alignas(64) AmxActK {
  int8_t q[4][kTile][64];
  int32_t sums[4][kTile];
  float d[kTile];
};

// The weights of 16 rows × one super-block: per 64 values (A tiles, rows = weight rows, in
// ActBlockK's order of the values) the bytes of n·sc, low and high; per row d, dmin and the
// mins as int16 pairs.
struct alignas(64) AmxWeightK {
  uint8_t lo[4][kTile][64];
  uint8_t hi[4][kTile][64];
  int32_t mins[kTile][4];
  float d[kTile], dmin[kTile];
};

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles: 0-3 the int32 sums (C_lo and C_hi of two activation tiles), 4-5 the weights' low and
// high bytes, 6-7 the two activation tiles; all 16 rows × 64 bytes.
MAMBA_AMX_TARGET void load_tile_config() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = kTile;
  }
  _tile_loadconfig(&cfg);
}

// Activation tile `t` (rows 16t ..) of super-block b.
MAMBA_AMX_TARGET void pack_act(const ActBlockK* x, int64_t rows, int64_t n_super, int64_t t, int64_t b,
                               AmxActK& out) {
  const int64_t r0 = t * kTile, valid = std::clamp<int64_t>(rows - r0, 0, kTile);
  const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
  const ActBlockK* first = x + r0 * n_super + b;
  // Byte offsets of the 16 rows' blocks (an int32 is enough: rows of one call are < 2 GiB apart).
  const __m512i row_off =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int>(n_super * sizeof(ActBlockK))));
  const auto* base = reinterpret_cast<const char*>(first);
  for (int c = 0; c < 4; ++c)
    for (int kk = 0; kk < kTile; ++kk)
      _mm512_store_si512(out.q[c][kk], _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, row_off,
                                                                   base + 64 * c + 4 * kk, 1));
  for (int p = 0; p < 4; ++p)
    _mm512_store_si512(out.sums[p], _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, row_off,
                                                                base + offsetof(ActBlockK, sum) + 4 * p, 1));
  _mm512_store_ps(out.d, _mm512_castsi512_ps(_mm512_mask_i32gather_epi32(
                             _mm512_setzero_si512(), mask, row_off, base + offsetof(ActBlockK, d), 1)));
}

// n·sc for 64 nibbles whose first 32 have scale s0 and last 32 s1: low and high bytes.
MAMBA_AMX_TARGET inline void scale_nibbles(__m512i nib, int s0, int s1, __m512i& lo, __m512i& hi) {
  const __m512i sc = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(static_cast<short>(s0)),
                                             _mm512_set1_epi16(static_cast<short>(s1)));
  const __m512i byte = _mm512_set1_epi16(0x00FF);
  const __m512i even = _mm512_mullo_epi16(_mm512_and_si512(nib, byte), sc);
  const __m512i odd = _mm512_mullo_epi16(_mm512_srli_epi16(nib, 8), sc);
  lo = _mm512_or_si512(_mm512_and_si512(even, byte), _mm512_slli_epi16(odd, 8));
  hi = _mm512_or_si512(_mm512_srli_epi16(even, 8), _mm512_andnot_si512(byte, odd));
}

// Weight rows o0 .. o0 + 15 (those below `out`) of super-block b.
MAMBA_AMX_TARGET void unpack_weights(const uint8_t* w, size_t row_bytes, int64_t out, int64_t o0, int64_t b,
                                     AmxWeightK& wk) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int n = 0; n < kTile; ++n) {
    if (o0 + n >= out) {
      for (int c = 0; c < 4; ++c) {
        _mm512_store_si512(wk.lo[c][n], _mm512_setzero_si512());
        _mm512_store_si512(wk.hi[c][n], _mm512_setzero_si512());
      }
      for (int p = 0; p < 4; ++p) wk.mins[n][p] = 0;
      wk.d[n] = wk.dmin[n] = 0.0f;
      continue;
    }
    const BlockQ4_K& blk = reinterpret_cast<const BlockQ4_K*>(w + static_cast<size_t>(o0 + n) * row_bytes)[b];
    uint64_t sc, m;
    q4k_scale_bytes(blk.scales, sc, m);
    const auto sc_of = [&](int s) { return static_cast<int>((sc >> (8 * s)) & 0xFF); };
    for (int g = 0; g < 2; ++g) {
      // Bytes 64g .. 64g + 63: low nibbles sub-blocks 4g, 4g + 2; high nibbles 4g + 1, 4g + 3
      // (ActBlockK's order: the low nibbles meet values 128g .., the high ones 128g + 64 ..).
      const __m512i bytes = _mm512_loadu_si512(blk.q + 64 * g);
      const __m512i nib_lo = _mm512_and_si512(bytes, low4);
      const __m512i nib_hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low4);
      __m512i lo, hi;
      scale_nibbles(nib_lo, sc_of(4 * g), sc_of(4 * g + 2), lo, hi);
      _mm512_store_si512(wk.lo[2 * g][n], lo);
      _mm512_store_si512(wk.hi[2 * g][n], hi);
      scale_nibbles(nib_hi, sc_of(4 * g + 1), sc_of(4 * g + 3), lo, hi);
      _mm512_store_si512(wk.lo[2 * g + 1][n], lo);
      _mm512_store_si512(wk.hi[2 * g + 1][n], hi);
    }
    for (int p = 0; p < 4; ++p)
      wk.mins[n][p] = static_cast<int32_t>(((m >> (16 * p)) & 0xFF) | (((m >> (16 * p + 8)) & 0xFF) << 16));
    const __m128 dd =
        _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(blk.d | (static_cast<uint32_t>(blk.dmin) << 16))));
    wk.d[n] = _mm_cvtss_f32(dd);
    wk.dmin[n] = _mm_cvtss_f32(_mm_movehdup_ps(dd));
  }
}

// acc[n] (lanes: the activation tile's rows) += d_x·(d_n·dot − dmin_n·Σ m·Σx) for one super-block.
MAMBA_AMX_TARGET inline void accumulate(const int32_t (&c_lo)[kTile][kTile],
                                        const int32_t (&c_hi)[kTile][kTile], const AmxWeightK& wk,
                                        const AmxActK& xa, float (&acc)[kTile][kTile]) {
  const __m512 dx = _mm512_load_ps(xa.d);
  __m512i sums[4];
  for (int p = 0; p < 4; ++p) sums[p] = _mm512_load_si512(xa.sums[p]);
  for (int n = 0; n < kTile; ++n) {
    const __m512i dot =
        _mm512_add_epi32(_mm512_load_si512(c_lo[n]), _mm512_slli_epi32(_mm512_load_si512(c_hi[n]), 8));
    __m512i mins = _mm512_setzero_si512();
    for (int p = 0; p < 4; ++p) mins = _mm512_dpwssd_epi32(mins, _mm512_set1_epi32(wk.mins[n][p]), sums[p]);
    const __m512 v = _mm512_fmsub_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(wk.d[n]),
                                     _mm512_mul_ps(_mm512_cvtepi32_ps(mins), _mm512_set1_ps(wk.dmin[n])));
    _mm512_store_ps(acc[n], _mm512_fmadd_ps(v, dx, _mm512_load_ps(acc[n])));
  }
}

// One task: weight rows o0 .. o0 + 15 against activation tiles t0 .. t1 - 1 (t1 - t0 even).
MAMBA_AMX_TARGET void run_task(const uint8_t* w, size_t row_bytes, int64_t out, int64_t o0,
                               const AmxActK* act, int64_t n_super, int64_t rows, int64_t t0, int64_t t1,
                               float* y, std::vector<AmxWeightK>& wk) {
  load_tile_config();
  wk.resize(static_cast<size_t>(n_super));
  for (int64_t b = 0; b < n_super; ++b) unpack_weights(w, row_bytes, out, o0, b, wk[static_cast<size_t>(b)]);
  alignas(64) int32_t c[4][kTile][kTile];
  alignas(64) float acc[2][kTile][kTile];
  for (int64_t t = t0; t < t1; t += 2) {
    std::fill(&acc[0][0][0], &acc[0][0][0] + 2 * kTile * kTile, 0.0f);
    for (int64_t b = 0; b < n_super; ++b) {
      const AmxWeightK& wb = wk[static_cast<size_t>(b)];
      const AmxActK& x0 = act[t * n_super + b];
      const AmxActK& x1 = act[(t + 1) * n_super + b];
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int k = 0; k < 4; ++k) {
        _tile_loadd(4, wb.lo[k], 64);
        _tile_loadd(5, wb.hi[k], 64);
        _tile_loadd(6, x0.q[k], 64);
        _tile_loadd(7, x1.q[k], 64);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 5, 6);
        _tile_dpbusd(2, 4, 7);
        _tile_dpbusd(3, 5, 7);
      }
      _tile_stored(0, c[0], 64);
      _tile_stored(1, c[1], 64);
      _tile_stored(2, c[2], 64);
      _tile_stored(3, c[3], 64);
      accumulate(c[0], c[1], wb, x0, acc[0]);
      accumulate(c[2], c[3], wb, x1, acc[1]);
    }
    for (int h = 0; h < 2; ++h)
      for (int64_t m = 0; m < kTile && (t + h) * kTile + m < rows; ++m)
        for (int64_t n = 0; n < kTile && o0 + n < out; ++n)
          y[((t + h) * kTile + m) * out + o0 + n] = acc[h][n][m];
  }
  _tile_release();  // the 8 KiB of tile state out of this thread's context switches
}

}  // namespace

MAMBA_AMX_TARGET void q4_k_gemm_amx(const uint8_t* w, size_t row_bytes, int64_t out, const ActBlockK* x,
                                    int64_t rows, int64_t n_super, float* y) {
  const int64_t n_tiles = (rows + 2 * kTile - 1) / (2 * kTile) * 2;  // activation tiles, even
  std::vector<AmxActK> act(static_cast<size_t>(n_tiles * n_super));
  parallel_for(n_tiles * n_super, [&](int64_t i) {
    pack_act(x, rows, n_super, i / n_super, i % n_super, act[static_cast<size_t>(i)]);
  });
  // Tasks: 16 weight rows × up to 8 activation tiles (their weight bytes unpacked once for 128
  // activation rows).
  constexpr int64_t kGroupTiles = 8;
  const int64_t n_wtiles = (out + kTile - 1) / kTile, n_groups = (n_tiles + kGroupTiles - 1) / kGroupTiles;
  parallel_for(n_wtiles * n_groups, [&](int64_t task) {
    thread_local std::vector<AmxWeightK> wk;
    const int64_t o0 = (task % n_wtiles) * kTile, t0 = (task / n_wtiles) * kGroupTiles;
    run_task(w, row_bytes, out, o0, act.data(), n_super, rows, t0, std::min(n_tiles, t0 + kGroupTiles), y,
             wk);
  });
}

}  // namespace mamba::ops::quant

#endif  // __x86_64__
