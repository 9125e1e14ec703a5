// AVX-512 VNNI kernels for quant_linear (quant_kernels_avx512.inc with vpdpbusd).
#define MAMBA_QUANT_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,f16c")))
#define MAMBA_QUANT_VNNI 1
#define MAMBA_QUANT_TABLE kernels_avx512_vnni
#include "ops/quant/quant_kernels_avx512.inc"
