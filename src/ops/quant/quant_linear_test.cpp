// Quantized linear layers: every weight type × every kernel set this CPU runs against a naive
// reference on random inputs (one row for decode, several for prefill; odd block counts for the
// AVX-512 tails; with and without bias), the formats' round trip error, and a hand-built q4_k
// block decoded by the layout's definition.
#include "ops/quant/quant_linear.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "core/quant_blocks.h"
#include "ops/quant/quant_kernels.h"
#include "testing.h"

namespace mamba::ops {
namespace {

// y = x̂·Ŵᵀ + b in double, with Ŵ the dequantized weight and x̂ the activations as the kernels
// see them (8-bit blocks of 32 for q8_0 / q4_0, of 256 for q4_k, f32 for bf16).
Tensor naive_quant_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const Tensor wf = dequantize(w);
  const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  std::vector<float> xs(x.f32(), x.f32() + x.numel());
  if (w.dtype() == DType::q4_k) {  // 8 bits per 256 values, sub-blocks in the kernels' order
    std::vector<quant::ActBlockK> blocks(static_cast<size_t>(rows * in / 256));
    quant::quantize_activations_k(x.f32(), rows * in, blocks.data());
    for (size_t k = 0; k < xs.size(); ++k) {
      const quant::ActBlockK& blk = blocks[k / 256];
      xs[k] = blk.d * blk.q[quant::act_k_offset(static_cast<int>(k % 256 / 32)) + k % 32];
    }
  } else if (dtype_is_block(w.dtype())) {
    std::vector<quant::ActBlock> blocks(static_cast<size_t>(rows * in / 32));
    quant::quantize_activations(x.f32(), rows * in, blocks.data());
    for (size_t k = 0; k < xs.size(); ++k) xs[k] = blocks[k / 32].d * blocks[k / 32].q[k % 32];
  }
  Tensor y = Tensor::empty({rows, out});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b.defined() ? b.f32()[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += double(xs[r * in + i]) * wf.f32()[o * in + i];
      y.f32()[r * out + o] = static_cast<float>(acc);
    }
  return y;
}

float max_abs(const Tensor& t) {
  float m = 0.0f;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

const QuantIsa kIsas[] = {QuantIsa::scalar, QuantIsa::avx2, QuantIsa::avx512, QuantIsa::avx512_vnni,
                          QuantIsa::amx};

TEST(QuantLinear, EveryTypeAndKernelMatchesNaive) {
  std::mt19937 rng(7);
  for (DType dtype : {DType::bf16, DType::q8_0, DType::q4_0, DType::q4_k}) {
    for (auto [rows, in, out] : {std::tuple{1, 256, 37},
                                 {5, 512, 64},
                                 {3, 96, 17},
                                 {1, 288, 9},
                                 {17, 768, 40},
                                 {70, 256, 33},
                                 {150, 512, 50},  // AMX: 10 activation tiles (two task groups)
                                 {9, 96, 5}}) {
      if (in % dtype_block_values(dtype) != 0) continue;
      const Tensor x = testing::random_tensor({rows, in}, rng);
      const Tensor w = quantize(testing::random_tensor({out, in}, rng), dtype);
      for (bool with_bias : {false, true}) {
        const Tensor b = with_bias ? testing::random_tensor({out}, rng) : Tensor();
        const Tensor want = naive_quant_linear(x, w, b);
        const float tol = 2e-5f * (1.0f + max_abs(want));  // f32 sums in another order
        for (QuantIsa isa : kIsas) {
          if (!quant_isa_supported(isa)) continue;
          SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + quant_isa_name(isa) + " rows " +
                       std::to_string(rows) + " in " + std::to_string(in) + " out " + std::to_string(out));
          for (bool tiled : {true, false}) {  // prefill tiles (rows >= 4) and row by row
            Tensor y = Tensor::empty({rows, out});
            quant_linear_into(x, w, b, y, isa, tiled);
            EXPECT_LT(testing::max_abs_diff(y, want), tol) << (tiled ? "tiled" : "row by row");
          }
        }
      }
    }
  }
}

// Prefill of 512 rows through a 130M Mamba-2's in_proj (768 -> 3352): the tiles against row by row
// on the best kernel set (printed: the A/B of docs/quantization.md), equal within rounding.
TEST(QuantLinear, PrefillTilesAgainstRowByRow) {
  std::mt19937 rng(3);
  const int64_t rows = 512, in = 768, out = 3352;
  const Tensor x = testing::random_tensor({rows, in}, rng);
  const Tensor wf = testing::random_tensor({out, in}, rng);
  for (DType dtype : {DType::q8_0, DType::q4_0, DType::q4_k}) {
    const Tensor w = quantize(wf, dtype);
    double ms[2] = {1e30, 1e30};
    Tensor y[2] = {Tensor::empty({rows, out}), Tensor::empty({rows, out})};
    for (int rep = 0; rep < 3; ++rep)
      for (int t = 0; t < 2; ++t) {
        const auto t0 = std::chrono::steady_clock::now();
        quant_linear_into(x, w, Tensor(), y[t], quant_isa_best(), t == 0);
        ms[t] = std::min(
            ms[t], std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    std::printf("quant prefill %-5s %s 512x768x3352: tiled %.2f ms, row by row %.2f ms (%.2fx)\n",
                dtype_name(dtype), quant_isa_name(quant_isa_best()), ms[0], ms[1], ms[1] / ms[0]);
    EXPECT_LT(testing::max_abs_diff(y[0], y[1]), 2e-5f * (1.0f + max_abs(y[1])));
  }
}

// Q4_K prefill, 256 rows (a prefill chunk) through in_proj (768 -> 3352) and out_proj (1536 ->
// 768): AMX against the AVX-512 VNNI tiles (printed for docs/quantization.md), equal within rounding.
TEST(QuantLinear, AmxQ4KAgainstAvx512Tiles) {
  if (!quant_isa_supported(QuantIsa::amx)) GTEST_SKIP() << "no AMX-INT8 here";
  std::mt19937 rng(5);
  for (auto [in, out] : {std::pair<int64_t, int64_t>{768, 3352}, {1536, 768}}) {
    const int64_t rows = 256;
    const Tensor x = testing::random_tensor({rows, in}, rng);
    const Tensor w = quantize(testing::random_tensor({out, in}, rng), DType::q4_k);
    double ms[2] = {1e30, 1e30};
    Tensor y[2] = {Tensor::empty({rows, out}), Tensor::empty({rows, out})};
    for (int rep = 0; rep < 5; ++rep)
      for (int t = 0; t < 2; ++t) {
        const auto t0 = std::chrono::steady_clock::now();
        quant_linear_into(x, w, Tensor(), y[t], t == 0 ? QuantIsa::amx : QuantIsa::avx512_vnni);
        ms[t] = std::min(
            ms[t], std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    std::printf("quant prefill q4_k 256x%ldx%ld: amx %.2f ms, avx512_vnni tiles %.2f ms (%.2fx)\n",
                static_cast<long>(in), static_cast<long>(out), ms[0], ms[1], ms[1] / ms[0]);
    EXPECT_LT(testing::max_abs_diff(y[0], y[1]), 2e-5f * (1.0f + max_abs(y[1])));
  }
}

// The SIMD activation quantizers against quantize_activations, bit for bit: random rows, values
// landing on exact halves after scaling (lroundf rounds those away from zero), zero blocks.
TEST(QuantLinear, SimdActivationQuantizerIsExact) {
#if defined(__x86_64__)
  std::mt19937 rng(11);
  const int64_t n = 32 * 40;
  Tensor x = testing::random_tensor({n}, rng);
  float* v = x.f32();
  for (int64_t i = 0; i < 32; ++i) v[i] = 0.0f;  // block 0: d = 0
  // block 1: amax 127, so d = 1 and the values ±0.5 .. ±15.5 are exact halves
  for (int64_t i = 32; i < 64; ++i) v[i] = i == 32 ? 127.0f : static_cast<float>(i - 48) + 0.5f;
  for (int64_t i = 64; i < 96; ++i) v[i] = i == 64 ? -127.0f : static_cast<float>(i - 80) - 0.5f;
  std::vector<quant::ActBlock> want(n / 32), got(n / 32);
  quant::quantize_activations(v, n, want.data());
  int tested = 0;
  for (QuantIsa isa : {QuantIsa::avx2, QuantIsa::avx512, QuantIsa::avx512_vnni}) {
    const quant::Kernels& k = quant::kernels_for(isa);
    if (!quant_isa_supported(isa) || !k.quantize) continue;
    ++tested;
    k.quantize(v, n, got.data());
    for (int64_t b = 0; b < n / 32; ++b) {
      SCOPED_TRACE(std::string(quant_isa_name(isa)) + " block " + std::to_string(b));
      EXPECT_EQ(got[b].d, want[b].d);
      EXPECT_EQ(got[b].sum, want[b].sum);
      EXPECT_EQ(std::memcmp(got[b].q, want[b].q, 32), 0);
    }
  }
  // The 256-value blocks of Q4_K: block 0 holds the exact halves above (amax 127: d = 1), block 2
  // is zero, the others random.
  for (int64_t i = 512; i < 768; ++i) v[i] = 0.0f;
  std::vector<quant::ActBlockK> want_k(n / 256), got_k(n / 256);
  quant::quantize_activations_k(v, n, want_k.data());
  EXPECT_EQ(want_k[0].d, 1.0f);
  EXPECT_EQ(want_k[0].q[quant::act_k_offset(1)], 127);  // value 32 (sub-block 1, the second 32 bytes)
  for (QuantIsa isa : {QuantIsa::avx2, QuantIsa::avx512, QuantIsa::avx512_vnni}) {
    const quant::Kernels& k = quant::kernels_for(isa);
    if (!quant_isa_supported(isa) || !k.quantize_k) continue;
    ++tested;
    k.quantize_k(v, n, got_k.data());
    for (int64_t b = 0; b < n / 256; ++b) {
      SCOPED_TRACE(std::string(quant_isa_name(isa)) + " q4_k block " + std::to_string(b));
      EXPECT_EQ(got_k[b].d, want_k[b].d);
      EXPECT_EQ(std::memcmp(got_k[b].sum, want_k[b].sum, sizeof(want_k[b].sum)), 0);
      EXPECT_EQ(std::memcmp(got_k[b].dsum, want_k[b].dsum, sizeof(want_k[b].dsum)), 0);
      EXPECT_EQ(std::memcmp(got_k[b].q, want_k[b].q, 256), 0);
    }
  }
  std::printf("simd activation quantizers tested: %d\n", tested);
#endif
}

// Decode (one activation row) through a weight larger than L2 (1536 -> 8192) on the best kernel
// set against the scalar one: printed as weight bytes per second (the GEMV should be bound by
// memory), equal within rounding.
TEST(QuantLinear, DecodeGemvThroughput) {
  std::mt19937 rng(5);
  const int64_t in = 1536, out = 8192;
  const Tensor x = testing::random_tensor({1, in}, rng);
  const Tensor wf = testing::random_tensor({out, in}, rng);
  for (DType dtype : {DType::bf16, DType::q8_0, DType::q4_0, DType::q4_k}) {
    const Tensor w = quantize(wf, dtype);
    Tensor y = Tensor::empty({1, out}), ref = Tensor::empty({1, out});
    quant_linear_into(x, w, Tensor(), ref, QuantIsa::scalar);
    double ms = 1e30;
    for (int rep = 0; rep < 20; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      quant_linear_into(x, w, Tensor(), y, quant_isa_best());
      ms = std::min(ms,
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    const double bytes = static_cast<double>(dtype_bytes(dtype, in)) * out;
    std::printf("quant decode %-5s %s 1x1536x8192: %.3f ms, %.1f GB/s of weights\n", dtype_name(dtype),
                quant_isa_name(quant_isa_best()), ms, bytes / ms * 1e-6);
    EXPECT_LT(testing::max_abs_diff(y, ref), 2e-5f * (1.0f + max_abs(ref)));
  }
}

// What the machine ran, so a log shows which kernels the test above covered.
TEST(QuantLinear, ReportsKernels) {
  for (QuantIsa isa : kIsas)
    std::printf("quant kernels %-12s %s\n", quant_isa_name(isa),
                quant_isa_supported(isa) ? "tested" : "not on this CPU");
  EXPECT_TRUE(quant_isa_supported(quant_isa_best()));
}

TEST(QuantFormats, RoundTripErrorIsSmall) {
  std::mt19937 rng(3);
  const Tensor w = testing::random_tensor({8, 512}, rng);
  const std::vector<float> ref = w.to_vector();
  double ref_sq = 0.0;
  for (float v : ref) ref_sq += double(v) * v;
  for (auto [dtype, bound] :
       {std::pair{DType::bf16, 0.005}, {DType::q8_0, 0.01}, {DType::q4_0, 0.12}, {DType::q4_k, 0.1}}) {
    const std::vector<float> back = dequantize(quantize(w, dtype)).to_vector();
    double err_sq = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) err_sq += (double(back[i]) - ref[i]) * (double(back[i]) - ref[i]);
    EXPECT_LT(std::sqrt(err_sq / ref_sq), bound) << dtype_name(dtype);
  }
}

// The q4_k layout by hand: sub-block scales / mins packed in 6 bits (the high bits of the last
// four in the top bits of the first eight bytes), values by nibble.
TEST(QuantFormats, Q4KBlockDecodesByDefinition) {
  BlockQ4_K blk{};
  blk.d = f32_to_f16(1.0f);
  blk.dmin = f32_to_f16(0.5f);
  blk.scales[0] = 5 | (1 << 6);  // sc0 = 5; high bits of sc4 = 1
  blk.scales[4] = 3 | (2 << 6);  // m0 = 3;  high bits of m4 = 2
  blk.scales[8] = 0x72;          // sc4 low = 2, m4 low = 7
  blk.q[0] = 0x21;               // value 0 = 1 (sub-block 0), value 32 = 2 (sub-block 1)
  blk.q[64] = 0x09;              // value 128 = 9 (sub-block 4)
  float y[256];
  dequantize_row(DType::q4_k, &blk, 256, y);
  EXPECT_FLOAT_EQ(y[0], 1.0f * 5 * 1 - 0.5f * 3);
  EXPECT_FLOAT_EQ(y[32], 0.0f);  // sc1 = m1 = 0
  EXPECT_FLOAT_EQ(y[128], 1.0f * (2 + 16) * 9 - 0.5f * (7 + 32));
  EXPECT_FLOAT_EQ(y[1], -0.5f * 3);  // nibble 0
}

TEST(QuantFormats, Q4_0AndQ8_0DecodeByDefinition) {
  BlockQ4_0 b4{};
  b4.d = f32_to_f16(0.25f);
  b4.q[3] = 0xF0;  // value 3 = 0 - 8, value 19 = 15 - 8
  BlockQ8_0 b8{};
  b8.d = f32_to_f16(-2.0f);
  b8.q[5] = -7;
  float y4[32], y8[32];
  dequantize_row(DType::q4_0, &b4, 32, y4);
  dequantize_row(DType::q8_0, &b8, 32, y8);
  EXPECT_FLOAT_EQ(y4[3], -8 * 0.25f);
  EXPECT_FLOAT_EQ(y4[19], 7 * 0.25f);
  EXPECT_FLOAT_EQ(y4[0], -8 * 0.25f);
  EXPECT_FLOAT_EQ(y8[5], 14.0f);
  EXPECT_FLOAT_EQ(y8[0], 0.0f);
}

// q6_k (read only: llama-quantize's embedding / output type): 6-bit values from a low nibble and
// two high bits, a signed 8-bit scale per 16 values, one f16 scale.
TEST(QuantFormats, Q6KBlockDecodesByDefinition) {
  BlockQ6_K blk{};
  blk.d = f32_to_f16(0.5f);
  blk.scales[0] = 2;
  blk.scales[2] = 3;
  blk.scales[4] = 4;
  blk.scales[6] = 1;
  blk.scales[8] = -1;
  blk.ql[0] = 0x5A;        // value 0: low 10; value 64: low 5
  blk.ql[32] = 0x07;       // value 32: low 7; value 96: low 0
  blk.qh[0] = 0b11100100;  // high bits 0, 1, 2, 3 of values 0, 32, 64, 96
  float y[256];
  dequantize_row(DType::q6_k, &blk, 256, y);
  EXPECT_FLOAT_EQ(y[0], 0.5f * 2 * (10 - 32));
  EXPECT_FLOAT_EQ(y[32], 0.5f * 3 * (7 + 16 - 32));
  EXPECT_FLOAT_EQ(y[64], 0.5f * 4 * (5 + 32 - 32));
  EXPECT_FLOAT_EQ(y[96], 0.5f * 1 * (0 + 48 - 32));
  EXPECT_FLOAT_EQ(y[128], 0.5f * -1 * -32);    // second half: scales[8]
  EXPECT_FLOAT_EQ(y[16], 0.0f);                // scales[1] = 0
  EXPECT_FALSE(is_quant_weight(DType::q6_k));  // converted to f32 when loaded
}

TEST(QuantFormats, HalfToFloatMatchesCore) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = quant::half_to_float(static_cast<uint16_t>(h)), b = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(b))
      EXPECT_TRUE(std::isnan(a)) << h;
    else
      ASSERT_EQ(a, b) << h;
  }
}

}  // namespace
}  // namespace mamba::ops
