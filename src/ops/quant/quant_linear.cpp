// Quantized linear layers on the CPU (quant_linear.h): the run-time kernel choice, the driver
// (activation quantization, rows of the weight in parallel) and the scalar kernels, which are
// also the reference the SIMD ones are tested against.
#include "ops/quant/quant_linear.h"

#include <algorithm>
#include <cmath>
#include <vector>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "core/error.h"
#include "core/parallel.h"
#include "core/quant_blocks.h"
#include "ops/quant/quant_kernels.h"

namespace mamba::ops {
namespace quant {

void quantize_activations(const float* x, int64_t n, ActBlock* out) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, inv = d > 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) {
      const auto q = static_cast<int8_t>(std::lround(x[i] * inv));
      out[b].q[i] = q;
      sum += q;
    }
    out[b].d = d;
    out[b].sum = sum;
  }
}

void quantize_activations_k(const float* x, int64_t n, ActBlockK* out) {
  for (int64_t b = 0; b < n / 256; ++b, x += 256) {
    float amax = 0.0f;
    for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, inv = d > 0.0f ? 1.0f / d : 0.0f;
    for (int s = 0; s < 8; ++s) {
      int32_t sum = 0;
      for (int i = 0; i < 32; ++i) {
        const auto q = static_cast<int8_t>(std::lround(x[32 * s + i] * inv));
        out[b].q[act_k_offset(s) + i] = q;
        sum += q;
      }
      out[b].sum[s] = static_cast<int16_t>(sum);
      out[b].dsum[s] = d * static_cast<float>(sum);
    }
    out[b].d = d;
  }
}

namespace {

float dot_q8_0(const void* w, const ActBlock* x, int64_t n_blocks) {
  const auto* blk = static_cast<const BlockQ8_0*>(w);
  float acc = 0.0f;
  for (int64_t b = 0; b < n_blocks; ++b) {
    int32_t s = 0;
    for (int i = 0; i < 32; ++i) s += blk[b].q[i] * x[b].q[i];
    acc += half_to_float(blk[b].d) * x[b].d * static_cast<float>(s);
  }
  return acc;
}

// Σ (nibble − 8)·q = Σ nibble·q − 8·Σ q: the SIMD kernels multiply unsigned nibbles.
float dot_q4_0(const void* w, const ActBlock* x, int64_t n_blocks) {
  const auto* blk = static_cast<const BlockQ4_0*>(w);
  float acc = 0.0f;
  for (int64_t b = 0; b < n_blocks; ++b) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) s += (blk[b].q[j] & 0xF) * x[b].q[j] + (blk[b].q[j] >> 4) * x[b].q[j + 16];
    acc += half_to_float(blk[b].d) * x[b].d * static_cast<float>(s - 8 * x[b].sum);
  }
  return acc;
}

float dot_q4_k(const void* w, const ActBlockK* x, int64_t n_super) {
  const auto* blk = static_cast<const BlockQ4_K*>(w);
  float acc = 0.0f;
  for (int64_t b = 0; b < n_super; ++b) {
    int32_t dot = 0, mins = 0;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      q4k_scale_min(blk[b].scales, s, sc, m);
      const uint8_t* q = blk[b].q + 32 * (s / 2);
      const int8_t* xq = x[b].q + act_k_offset(s);
      int32_t sub = 0;
      for (int i = 0; i < 32; ++i) sub += (s % 2 == 0 ? q[i] & 0xF : q[i] >> 4) * xq[i];
      dot += sc * sub;
      mins += m * x[b].sum[s];
    }
    acc += x[b].d * (half_to_float(blk[b].d) * static_cast<float>(dot) -
                     half_to_float(blk[b].dmin) * static_cast<float>(mins));
  }
  return acc;
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += bf16_to_f32(w[i]) * x[i];
  return acc;
}

}  // namespace

const Kernels kernels_scalar = {dot_q8_0, dot_q4_0, dot_q4_k, dot_bf16};

}  // namespace quant

const char* quant_isa_name(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::scalar:
      return "scalar";
    case QuantIsa::avx2:
      return "avx2";
    case QuantIsa::avx512:
      return "avx512";
    case QuantIsa::avx512_vnni:
      return "avx512_vnni";
    case QuantIsa::amx:
      return "amx";
  }
  return "?";
}

bool quant_isa_supported(QuantIsa isa) {
#if defined(__x86_64__)
  // Every AVX2 CPU has F16C; the kernels convert the blocks' f16 scales with it. Asked of CPUID
  // (leaf 1, ECX bit 29; clang 14's __builtin_cpu_supports does not know "f16c") once: every
  // quantized linear checks its kernel set, and CPUID traps to the hypervisor in a VM (it was
  // 2.7% of a Q4_K decode).
  static const bool f16c = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  }();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  switch (isa) {
    case QuantIsa::scalar:
      return true;
    case QuantIsa::avx2:
      return avx2;
    case QuantIsa::avx512:
      return avx512;
    case QuantIsa::avx512_vnni:
      return avx512 && __builtin_cpu_supports("avx512vnni");
    case QuantIsa::amx:
      return avx512 && __builtin_cpu_supports("avx512vnni") && quant::amx_int8_usable();
  }
  return false;
#else
  return isa == QuantIsa::scalar;
#endif
}

QuantIsa quant_isa_best() {
  static const QuantIsa best = [] {
    for (QuantIsa isa : {QuantIsa::amx, QuantIsa::avx512_vnni, QuantIsa::avx512, QuantIsa::avx2})
      if (quant_isa_supported(isa)) return isa;
    return QuantIsa::scalar;
  }();
  return best;
}

bool is_quant_weight(DType dtype) {  // q6_k has no kernels yet: loaded as f32
  return dtype == DType::bf16 || dtype == DType::q8_0 || dtype == DType::q4_0 || dtype == DType::q4_k;
}

void quant_linear_into(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, QuantIsa isa,
                       bool tiled) {
  MAMBA_CHECK(quant_isa_supported(isa), quant_isa_name(isa));
  MAMBA_CHECK(x.is_contiguous() && weight.is_contiguous() && y.is_contiguous() && weight.dim() == 2);
  MAMBA_CHECK(is_quant_weight(weight.dtype()), dtype_name(weight.dtype()));
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x.size(-1) == in,
              "quant_linear: x " << shape_str(x.shape()) << " weight " << shape_str(weight.shape()));
  const int64_t rows = x.numel() / in;
  MAMBA_CHECK(y.numel() == rows * out);
  if (rows == 0 || out == 0) return;
  const quant::Kernels& k = quant::kernels_for(isa);
  const DType dtype = weight.dtype();
  const auto* w = static_cast<const uint8_t*>(weight.raw());
  const size_t row_bytes = dtype_bytes(dtype, in);
  const float* xp = x.f32();
  float* yp = y.f32();
  const float* bp = bias.defined() ? bias.f32() : nullptr;
  // The activations once, as 8-bit blocks of 32 values (Q4_K: of 256; bf16 reads them in f32).
  std::vector<quant::ActBlock> xq;
  std::vector<quant::ActBlockK> xk;
  const int64_t n_blocks = in / 32, n_super = in / 256;
  if (dtype == DType::q4_k) {
    xk.resize(static_cast<size_t>(rows * n_super));
    const auto quantize_act = k.quantize_k ? k.quantize_k : quant::quantize_activations_k;
    parallel_for(rows, [&](int64_t r) { quantize_act(xp + r * in, in, xk.data() + r * n_super); });
  } else if (dtype != DType::bf16) {
    xq.resize(static_cast<size_t>(rows * n_blocks));
    const auto quantize_act = k.quantize ? k.quantize : quant::quantize_activations;
    parallel_for(rows, [&](int64_t r) { quantize_act(xp + r * in, in, xq.data() + r * n_blocks); });
  }
  auto dot = [&](int64_t o, int64_t r) -> float {
    const uint8_t* wr = w + static_cast<size_t>(o) * row_bytes;
    switch (dtype) {
      case DType::q8_0:
        return k.q8_0(wr, xq.data() + r * n_blocks, n_blocks);
      case DType::q4_0:
        return k.q4_0(wr, xq.data() + r * n_blocks, n_blocks);
      case DType::q4_k:
        return k.q4_k(wr, xk.data() + r * n_super, n_super);
      default:
        return k.bf16(reinterpret_cast<const uint16_t*>(wr), xp + r * in, in);
    }
  };
  // Chunks of weight rows: each chunk's rows stay in cache while every activation row passes.
  constexpr int64_t kChunk = 16;
  const int64_t n_chunks = (out + kChunk - 1) / kChunk;
  // Prefill: kTileW x kTileX tiles over (chunk of weight rows) x (group of activation rows) tasks,
  // parallel over both; the rows and columns left over at the edges go one by one.
  const quant::TileFn tile = !tiled                 ? nullptr
                             : dtype == DType::q8_0 ? k.q8_0_tile
                             : dtype == DType::q4_0 ? k.q4_0_tile
                                                    : nullptr;
  const quant::TileKFn tile_k = tiled && dtype == DType::q4_k ? k.q4_k_tile : nullptr;
  const quant::PackFn pack = !tiled                 ? nullptr
                             : dtype == DType::q8_0 ? k.q8_0_pack
                             : dtype == DType::q4_0 ? k.q4_0_pack
                                                    : nullptr;
  const quant::PackedTileFn ptile = dtype == DType::q8_0 ? k.q8_0_ptile : k.q4_0_ptile;
#if defined(__x86_64__)
  // AMX's 16-row tiles: from 16 activation rows on (padded to 32 inside).
  if (tile_k && isa == QuantIsa::amx && rows >= 16) {
    quant::q4_k_gemm_amx(w, row_bytes, out, xk.data(), rows, n_super, yp);
    if (bp)
      parallel_for(rows, [&](int64_t r) {
        for (int64_t o = 0; o < out; ++o) yp[r * out + o] += bp[o];
      });
    return;
  }
#endif
  if ((tile || tile_k || pack) && rows >= quant::kTileX) {
    const int64_t n_pairs = (n_blocks + 1) / 2;
    std::vector<quant::PackedPair> packed;
    if (pack) {
      packed.resize(static_cast<size_t>(rows * n_pairs));
      parallel_for(rows,
                   [&](int64_t r) { pack(xq.data() + r * n_blocks, n_blocks, packed.data() + r * n_pairs); });
    }
    // One kTileW x kTileX tile at weight row o, activation row r.
    auto run_tile = [&](int64_t o, int64_t r) {
      const uint8_t* wo = w + static_cast<size_t>(o) * row_bytes;
      float* yo = yp + r * out + o;
      if (tile_k)
        tile_k(wo, row_bytes, xk.data() + r * n_super, n_super, n_super, yo, out);
      else if (pack)
        ptile(wo, row_bytes, packed.data() + r * n_pairs, n_pairs, n_blocks, yo, out);
      else
        tile(wo, row_bytes, xq.data() + r * n_blocks, n_blocks, n_blocks, yo, out);
    };
    constexpr int64_t kGroup = 32;  // activation rows per task (kTileX-aligned; 64 was 5-14% slower)
    const int64_t n_groups = (rows + kGroup - 1) / kGroup;
    parallel_for(n_chunks * n_groups, [&](int64_t task) {
      const int64_t o0 = (task % n_chunks) * kChunk, o1 = std::min(out, o0 + kChunk);
      const int64_t r0 = (task / n_chunks) * kGroup, r1 = std::min(rows, r0 + kGroup);
      int64_t r = r0;
      for (; r + quant::kTileX <= r1; r += quant::kTileX) {
        int64_t o = o0;
        for (; o + quant::kTileW <= o1; o += quant::kTileW) run_tile(o, r);
        for (; o < o1; ++o)
          for (int64_t j = r; j < r + quant::kTileX; ++j) yp[j * out + o] = dot(o, j);
      }
      for (; r < r1; ++r)
        for (int64_t o = o0; o < o1; ++o) yp[r * out + o] = dot(o, r);
      if (bp)
        for (int64_t j = r0; j < r1; ++j)
          for (int64_t o = o0; o < o1; ++o) yp[j * out + o] += bp[o];
    });
    return;
  }
  parallel_for(n_chunks, [&](int64_t c) {
    const int64_t o_end = std::min(out, (c + 1) * kChunk);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = c * kChunk; o < o_end; ++o) yp[r * out + o] = dot(o, r) + (bp ? bp[o] : 0.0f);
  });
}

void quant_linear_into(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y) {
  quant_linear_into(x, weight, bias, y, quant_isa_best(), true);
}

Tensor dequantize(const Tensor& weight) {
  MAMBA_CHECK(weight.device() == Device::cpu && weight.is_contiguous());
  if (weight.dtype() == DType::f32) return weight;
  Tensor out = Tensor::empty(weight.shape());
  const int64_t row = weight.dim() == 0 ? 1 : weight.size(-1),
                n_rows = weight.numel() / std::max<int64_t>(row, 1);
  const auto* src = static_cast<const uint8_t*>(weight.raw());
  const size_t row_bytes = dtype_bytes(weight.dtype(), row);
  parallel_for(n_rows, [&](int64_t r) {
    dequantize_row(weight.dtype(), src + static_cast<size_t>(r) * row_bytes, row, out.f32() + r * row);
  });
  return out;
}

Tensor quantize(const Tensor& weight, DType dtype) {
  MAMBA_CHECK(weight.dtype() == DType::f32 && weight.device() == Device::cpu && weight.dim() >= 1);
  const Tensor src = weight.contiguous();
  const int64_t row = src.size(-1), n_rows = src.numel() / std::max<int64_t>(row, 1);
  MAMBA_CHECK(row % dtype_block_values(dtype) == 0, row << " values per row for " << dtype_name(dtype));
  Tensor out = Tensor::empty(src.shape(), dtype);
  auto* dst = static_cast<uint8_t*>(out.raw());
  const size_t row_bytes = dtype_bytes(dtype, row);
  parallel_for(n_rows, [&](int64_t r) {
    quantize_row(dtype, src.f32() + r * row, row, dst + static_cast<size_t>(r) * row_bytes);
  });
  return out;
}

}  // namespace mamba::ops

namespace mamba::ops::quant {

const Kernels& kernels_for(QuantIsa isa) {
#if defined(__x86_64__)
  switch (isa) {
    case QuantIsa::avx2:
      return kernels_avx2;
    case QuantIsa::avx512:
      return kernels_avx512;
    case QuantIsa::avx512_vnni:
    case QuantIsa::amx:  // its own Q4_K prefill besides (quant_linear_into)
      return kernels_avx512_vnni;
    case QuantIsa::scalar:
      break;
  }
#endif
  (void)isa;
  return kernels_scalar;
}

}  // namespace mamba::ops::quant
