// AVX-512 VNNI kernels for quant_linear (quant_kernels_avx512.inc with vpdpbusd).
#define MAMBA_QUANT_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,f16c")))
#define MAMBA_QUANT_VNNI 1
#include "ops/quant/quant_kernels_avx512.inc"

namespace mamba::ops::quant {
const Kernels kernels_avx512_vnni = {dot_q8_0,     dot_q4_0,      dot_q4_k,      dot_bf16,     nullptr,
                                     nullptr,      nullptr,       quantize_act,  pack512_q8_0, pack512_q4_0,
                                     pack512_q4_k, ptile512_q8_0, ptile512_q4_0, ptile512_q4_k};
}  // namespace mamba::ops::quant
