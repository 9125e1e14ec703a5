// Linear layers with bf16 or llama.cpp block-format weights (q8_0, q4_0, q4_k) on the CPU, read
// in place (a GGUF mapping; no f32 copy). The activations are quantized to 8 bits per 32 values
// (Q4_K: per 256; as llama.cpp does) and dotted with the weights in integers; bf16 runs in f32. The kernel
// set (scalar, AVX2, AVX-512, AVX-512 VNNI) is chosen at run time from the CPU's features.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace mamba::ops {

// amx: avx512_vnni's kernels, and Q4_K prefill on AMX-INT8 tiles.
enum class QuantIsa { scalar, avx2, avx512, avx512_vnni, amx };

const char* quant_isa_name(QuantIsa isa);
bool quant_isa_supported(QuantIsa isa);  // does this CPU run it?
QuantIsa quant_isa_best();               // the widest supported (cpuid, once)

// Whether ops::linear takes the quantized path for this weight dtype.
bool is_quant_weight(DType dtype);  // bf16, q8_0, q4_0, q4_k

// y = x·Wᵀ (+ bias): x [rows, in] f32 contiguous; weight [out, in] of a quantized dtype,
// contiguous; bias [out] f32 or undefined; y [rows, out] f32 contiguous. Parallel over rows of
// the weight, and for prefill (rows >= 4, q8_0 / q4_0 / q4_k, `tiled`) over tiles of weight rows
// x activation rows (OpenMP, core/parallel.h). `isa` must be supported; `tiled` false keeps one
// row at a time (the reference the tiles are measured against).
void quant_linear_into(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, QuantIsa isa,
                       bool tiled = true);
void quant_linear_into(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y);  // best isa

// An f32 copy of a weight of any dtype (block formats dequantized).
Tensor dequantize(const Tensor& weight);
// `weight` [.., in] f32 as `dtype` (bf16, q8_0, q4_0, q4_k; `in` a multiple of the block).
Tensor quantize(const Tensor& weight, DType dtype);

}  // namespace mamba::ops
