// AVX-512 VNNI kernels for quant_linear (quant_kernels_avx512.inc with vpdpbusd).
#define MAMBA_QUANT_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,f16c")))
#define MAMBA_QUANT_VNNI 1
#include "ops/quant/quant_kernels_avx512.inc"

namespace mamba::ops::quant {
const Kernels kernels_avx512_vnni = {.q8_0 = dot_q8_0,
                                     .q4_0 = dot_q4_0,
                                     .q4_k = dot_q4_k,
                                     .bf16 = dot_bf16,
                                     .q4_k_tile = tile512_q4_k,
                                     .quantize = quantize_act,
                                     .quantize_k = quantize_act_k,
                                     .q8_0_pack = pack512_q8_0,
                                     .q4_0_pack = pack512_q4_0,
                                     .q8_0_ptile = ptile512_q8_0,
                                     .q4_0_ptile = ptile512_q4_0};
}  // namespace mamba::ops::quant
