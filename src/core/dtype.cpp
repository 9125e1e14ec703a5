// Scalar dtype helpers: sizes, names, IEEE half conversions.
#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace mamba {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::bf16:
      return 2;
    case DType::f16:
      return 2;
    case DType::i64:
      return 8;
    case DType::i32:
      return 4;
    case DType::u8:
      return 1;
    case DType::q8_0:
    case DType::q4_0:
    case DType::q4_k:
    case DType::q6_k:
      break;
  }
  MAMBA_CHECK(false, "dtype_size of block format " << dtype_name(dtype));
  return 0;
}

bool dtype_is_block(DType dtype) {
  return dtype == DType::q8_0 || dtype == DType::q4_0 || dtype == DType::q4_k || dtype == DType::q6_k;
}

int64_t dtype_block_values(DType dtype) {
  if (dtype == DType::q4_k || dtype == DType::q6_k) return 256;
  return dtype_is_block(dtype) ? 32 : 1;
}

// llama.cpp's layouts: q8_0 = f16 scale + 32 int8; q4_0 = f16 scale + 16 bytes of nibbles;
// q4_k = f16 scale, f16 min, 12 bytes of 6-bit sub-block scales / mins, 128 bytes of nibbles;
// q6_k = 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, f16 scale.
size_t dtype_block_bytes(DType dtype) {
  switch (dtype) {
    case DType::q8_0:
      return 34;
    case DType::q4_0:
      return 18;
    case DType::q4_k:
      return 144;
    case DType::q6_k:
      return 210;
    default:
      return dtype_size(dtype);
  }
}

size_t dtype_bytes(DType dtype, int64_t numel) {
  const int64_t block = dtype_block_values(dtype);
  MAMBA_CHECK(numel >= 0 && numel % block == 0, numel << " values of " << dtype_name(dtype));
  return static_cast<size_t>(numel / block) * dtype_block_bytes(dtype);
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
    case DType::i64:
      return "i64";
    case DType::i32:
      return "i32";
    case DType::u8:
      return "u8";
    case DType::q8_0:
      return "q8_0";
    case DType::q4_0:
      return "q4_0";
    case DType::q4_k:
      return "q4_k";
    case DType::q6_k:
      return "q6_k";
  }
  return "?";
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  float value;
  if (exp == 0) {
    value = std::ldexp(static_cast<float>(mant), -24);  // subnormal
  } else if (exp == 31) {
    value = mant ? NAN : INFINITY;
  } else {
    value = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -value : value;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // subnormal or zero in f16: round value * 2^24 to nearest even
    float a;
    std::memcpy(&a, &abs, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 16777216.0f)));
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

}  // namespace mamba
