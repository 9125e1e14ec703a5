// AVX-512 (F, BW, VL) kernels for quant_linear without VNNI (quant_kernels_avx512.inc).
#define MAMBA_QUANT_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,f16c")))
#define MAMBA_QUANT_VNNI 0
#define MAMBA_QUANT_TABLE kernels_avx512
#include "ops/quant/quant_kernels_avx512.inc"
