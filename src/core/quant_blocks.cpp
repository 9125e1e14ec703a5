// Row quantization to and from llama.cpp's block formats (quant_blocks.h).
#include "core/quant_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace mamba {

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ6_K) == 210,
              "block layouts must match the GGUF bytes");

namespace {

void quantize_q8_0(const float* x, int64_t n, BlockQ8_0* out) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    out[b].d = f32_to_f16(d);
    for (int i = 0; i < 32; ++i) out[b].q[i] = static_cast<int8_t>(std::lround(x[i] * inv));
  }
}

// The value of largest magnitude maps to −8 exactly (its sign kept in d), so both ends of
// [−8, 7] are used for the side that needs the range.
void quantize_q4_0(const float* x, int64_t n, BlockQ4_0* out) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float extreme = 0.0f;
    for (int i = 0; i < 32; ++i)
      if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
    const float d = extreme / -8.0f;
    const float inv = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = f32_to_f16(d);
    for (int j = 0; j < 16; ++j) {
      const long lo = std::clamp(std::lround(x[j] * inv) + 8, 0L, 15L);
      const long hi = std::clamp(std::lround(x[j + 16] * inv) + 8, 0L, 15L);
      out[b].q[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// Per sub-block of 32: an offset (min, ≤ 0) and a step so that [min, max] spans 0..15; the
// steps and offsets are then themselves quantized to 6 bits against the block's largest ones.
void quantize_q4_k(const float* x, int64_t n, BlockQ4_K* out) {
  for (int64_t b = 0; b < n / 256; ++b, x += 256) {
    float step[8], offset[8];
    float max_step = 0.0f, max_offset = 0.0f;
    for (int s = 0; s < 8; ++s) {
      float lo = 0.0f, hi = 0.0f;
      for (int i = 0; i < 32; ++i) {
        lo = std::min(lo, x[32 * s + i]);
        hi = std::max(hi, x[32 * s + i]);
      }
      step[s] = (hi - lo) / 15.0f;
      offset[s] = -lo;
      max_step = std::max(max_step, step[s]);
      max_offset = std::max(max_offset, offset[s]);
    }
    BlockQ4_K& blk = out[b];
    const float d = max_step / 63.0f, dmin = max_offset / 63.0f;
    blk.d = f32_to_f16(d);
    blk.dmin = f32_to_f16(dmin);
    const float d16 = f16_to_f32(blk.d), dmin16 = f16_to_f32(blk.dmin);
    uint8_t sc[8], m[8];
    for (int s = 0; s < 8; ++s) {
      sc[s] = static_cast<uint8_t>(d16 > 0.0f ? std::clamp(std::lround(step[s] / d16), 0L, 63L) : 0);
      m[s] = static_cast<uint8_t>(dmin16 > 0.0f ? std::clamp(std::lround(offset[s] / dmin16), 0L, 63L) : 0);
    }
    std::memset(blk.scales, 0, sizeof blk.scales);
    for (int s = 0; s < 4; ++s) {  // the inverse of q4k_scale_min
      blk.scales[s] = static_cast<uint8_t>(sc[s] | ((sc[s + 4] >> 4) << 6));
      blk.scales[s + 4] = static_cast<uint8_t>(m[s] | ((m[s + 4] >> 4) << 6));
      blk.scales[s + 8] = static_cast<uint8_t>((sc[s + 4] & 0xF) | ((m[s + 4] & 0xF) << 4));
    }
    for (int s = 0; s < 8; ++s) {
      const float scale = d16 * static_cast<float>(sc[s]), shift = dmin16 * static_cast<float>(m[s]);
      const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
      uint8_t* q = blk.q + 32 * (s / 2);
      for (int i = 0; i < 32; ++i) {
        const auto v = static_cast<uint8_t>(std::clamp(std::lround((x[32 * s + i] + shift) * inv), 0L, 15L));
        q[i] = static_cast<uint8_t>(s % 2 == 0 ? v : (q[i] | (v << 4)));
      }
    }
  }
}

void dequantize_q4_k(const BlockQ4_K* in, int64_t n, float* y) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const BlockQ4_K& blk = in[b];
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      q4k_scale_min(blk.scales, s, sc, m);
      const float scale = d * static_cast<float>(sc), shift = dmin * static_cast<float>(m);
      const uint8_t* q = blk.q + 32 * (s / 2);
      for (int i = 0; i < 32; ++i)
        *y++ = scale * static_cast<float>(s % 2 == 0 ? q[i] & 0xF : q[i] >> 4) - shift;
    }
  }
}

// Each half of 128 values: value l + 32·k (k = 0..3) takes its low 4 bits from ql (byte l for
// k = 0, 2 and l + 32 for k = 1, 3; low nibble for k < 2) and bits 2k..2k+1 of qh[l].
void dequantize_q6_k(const BlockQ6_K* in, int64_t n, float* y) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const BlockQ6_K& blk = in[b];
    const float d = f16_to_f32(blk.d);
    for (int half = 0; half < 2; ++half, y += 128) {
      const uint8_t* ql = blk.ql + 64 * half;
      const uint8_t* qh = blk.qh + 32 * half;
      const int8_t* sc = blk.scales + 8 * half;
      for (int l = 0; l < 32; ++l)
        for (int k = 0; k < 4; ++k) {
          const uint8_t low = ql[l + 32 * (k % 2)];
          const int q = ((k < 2 ? low & 0xF : low >> 4) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
          y[l + 32 * k] = d * static_cast<float>(sc[l / 16 + 2 * k]) * static_cast<float>(q);
        }
    }
  }
}

}  // namespace

void quantize_row(DType dtype, const float* x, int64_t n, void* out) {
  MAMBA_CHECK(n % dtype_block_values(dtype) == 0, n << " values of " << dtype_name(dtype));
  switch (dtype) {
    case DType::q8_0:
      return quantize_q8_0(x, n, static_cast<BlockQ8_0*>(out));
    case DType::q4_0:
      return quantize_q4_0(x, n, static_cast<BlockQ4_0*>(out));
    case DType::q4_k:
      return quantize_q4_k(x, n, static_cast<BlockQ4_K*>(out));
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = f32_to_bf16(x[i]);
      return;
    case DType::f16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = f32_to_f16(x[i]);
      return;
    case DType::f32:
      std::memcpy(out, x, static_cast<size_t>(n) * 4);
      return;
    default:
      MAMBA_CHECK(false, "quantize_row to " << dtype_name(dtype));
  }
}

void dequantize_row(DType dtype, const void* in, int64_t n, float* y) {
  MAMBA_CHECK(n % dtype_block_values(dtype) == 0, n << " values of " << dtype_name(dtype));
  switch (dtype) {
    case DType::q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const BlockQ8_0& blk = static_cast<const BlockQ8_0*>(in)[b];
        const float d = f16_to_f32(blk.d);
        for (int i = 0; i < 32; ++i) y[32 * b + i] = d * static_cast<float>(blk.q[i]);
      }
      return;
    case DType::q4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const BlockQ4_0& blk = static_cast<const BlockQ4_0*>(in)[b];
        const float d = f16_to_f32(blk.d);
        for (int j = 0; j < 16; ++j) {
          y[32 * b + j] = d * static_cast<float>((blk.q[j] & 0xF) - 8);
          y[32 * b + j + 16] = d * static_cast<float>((blk.q[j] >> 4) - 8);
        }
      }
      return;
    case DType::q4_k:
      return dequantize_q4_k(static_cast<const BlockQ4_K*>(in), n, y);
    case DType::q6_k:
      return dequantize_q6_k(static_cast<const BlockQ6_K*>(in), n, y);
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(static_cast<const uint16_t*>(in)[i]);
      return;
    case DType::f16:
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(static_cast<const uint16_t*>(in)[i]);
      return;
    case DType::f32:
      std::memcpy(y, in, static_cast<size_t>(n) * 4);
      return;
    default:
      MAMBA_CHECK(false, "dequantize_row from " << dtype_name(dtype));
  }
}

}  // namespace mamba
