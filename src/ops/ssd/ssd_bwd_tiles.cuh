// Building blocks of the chunked scan backwards on tensor cores (ssd_bwd_fast.cu for Mamba-2,
// mamba3_scan_bwd_fast.cu for the Mamba-3 SISO scan): 64-token chunks, head_dim 64, d_state 128,
// bf16 tiles in shared memory (rows padded by 8 elements), fp32 accumulation. Fragment layouts as
// in ssd_mma.cuh. Device code only.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "ops/ssd/ssd_mma.cuh"

namespace mamba::ops::cuda::chunk_bwd {

constexpr int kQ = 64;            // tokens per chunk: four 16-row mma tiles
constexpr int kP = 64, kN = 128;  // the compiled head_dim and d_state
constexpr int kPad = 8;           // bf16 row padding: row strides ≡ 16 B (mod 128 B), no bank conflicts
constexpr int kLdP = kP + kPad, kLdN = kN + kPad, kLdQ = kQ + kPad;
constexpr float kLog2e = 1.4426950408889634f;

// rows × kCols fp32 (row r at src + r·row_stride, zero for rows ≥ valid_rows) → bf16 shared rows of ld.
template <int kRows, int kCols, int kLd, int kNThreads>
__device__ __forceinline__ void load_bf16(__nv_bfloat16* dst, const float* src, int64_t row_stride,
                                          int valid_rows) {
  constexpr int kVec = kCols / 4;
  static_assert(kRows * kVec % kNThreads == 0, "whole rounds of float4 loads");
#pragma unroll  // all loads in flight before the first store
  for (int j = 0; j < kRows * kVec / kNThreads; ++j) {
    const int i = threadIdx.x + j * kNThreads, r = i / kVec, col = (i % kVec) * 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < valid_rows) v = *reinterpret_cast<const float4*>(src + r * row_stride + col);
    uint2 packed;
    packed.x = pack_bf16(v.x, v.y), packed.y = pack_bf16(v.z, v.w);
    *reinterpret_cast<uint2*>(dst + r * kLd + col) = packed;
  }
}

// acc[16 state rows (head_dim [16w, 16w+16) of warp w) × kN] += Σ_t wt_t·v_tᵀ k_t over the chunk's
// tokens: v [token, head_dim] (ld kLdP) and k [token, d_state] (ld kLdN) in shared memory.
__device__ __forceinline__ void accumulate_state(float (&acc)[kN / 8][4], const __nv_bfloat16* v,
                                                 const __nv_bfloat16* k, const float* wt) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, qd = lane & 3;
#pragma unroll
  for (int ks = 0; ks < kQ / 16; ++ks) {
    uint32_t a[4];  // (v·wt)ᵀ [head_dim, token], from v [token, head_dim] by a transposing load
    ldsm_x4_trans(a, &v[(ks * 16 + (lane & 7) + (lane >> 4) * 8) * kLdP + warp * 16 + ((lane >> 3) & 1) * 8]);
    const int t = ks * 16 + 2 * qd;
    a[0] = scale_bf16x2(a[0], wt[t], wt[t + 1]);
    a[1] = scale_bf16x2(a[1], wt[t], wt[t + 1]);
    a[2] = scale_bf16x2(a[2], wt[t + 8], wt[t + 9]);
    a[3] = scale_bf16x2(a[3], wt[t + 8], wt[t + 9]);
#pragma unroll
    for (int nt2 = 0; nt2 < kN / 16; ++nt2) {
      uint32_t bk[4];
      ldsm_x4_trans(bk,
                    &k[(ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLdN + nt2 * 16 + (lane >> 4) * 8]);
      mma_bf16(acc[2 * nt2], a, bk[0], bk[1]);
      mma_bf16(acc[2 * nt2 + 1], a, bk[2], bk[3]);
    }
  }
}

// The warp's accumulate_state rows → a [head_dim, d_state] bf16 state in global memory.
__device__ __forceinline__ void store_state_bf16(__nv_bfloat16* o, const float (&acc)[kN / 8][4]) {
  const int lane = threadIdx.x & 31, row = (threadIdx.x >> 5) * 16 + (lane >> 2), col = 2 * (lane & 3);
#pragma unroll
  for (int nt = 0; nt < kN / 8; ++nt) {
    *reinterpret_cast<uint32_t*>(o + row * kN + nt * 8 + col) = pack_bf16(acc[nt][0], acc[nt][1]);
    *reinterpret_cast<uint32_t*>(o + (row + 8) * kN + nt * 8 + col) = pack_bf16(acc[nt][2], acc[nt][3]);
  }
}

// The pass over chunks, per (batch·head) = blockIdx.y and kPassVec state elements a thread:
// blockIdx.z 0: S (each chunk's local state) becomes the state entering each chunk; 1: dS (each
// chunk's local state gradient) becomes the gradient of the state leaving each chunk. decay: the
// chunks' log2 decays [batch·head, nc]. bf16 in memory, fp32 carry; eight chunks' loads in flight
// per thread (the chain over chunks is latency-bound). Grid (ceil(kElems / kPassVec / 256),
// batch·heads, 2), 256 threads.
constexpr int kPassVec = 8;  // state elements per thread (16 bytes)

template <int kElems>  // a template: defined in every including file without clashing symbols
__global__ void __launch_bounds__(256)
    state_pass_kernel(int nc, __nv_bfloat16* S, __nv_bfloat16* dS, const float* decay) {
  const int e = (blockIdx.x * blockDim.x + threadIdx.x) * kPassVec;
  if (e >= kElems) return;
  const int bh = blockIdx.y;
  const bool reverse = blockIdx.z == 1;
  __nv_bfloat16* base = (reverse ? dS : S) + int64_t(bh) * nc * kElems + e;
  const float* dec = decay + int64_t(bh) * nc;
  constexpr int kAhead = 8;
  float H[kPassVec] = {};
  for (int i0 = 0; i0 < nc; i0 += kAhead) {
    uint4 loc[kAhead];
    float T[kAhead];
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      const int c = reverse ? nc - 1 - (i0 + i) : i0 + i;
      if (i0 + i < nc) {
        loc[i] = __ldcs(reinterpret_cast<const uint4*>(base + int64_t(c) * kElems));
        T[i] = exp2f(dec[c]);
      }
    }
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      const int c = reverse ? nc - 1 - (i0 + i) : i0 + i;
      if (i0 + i < nc) {
        const uint32_t in[4] = {loc[i].x, loc[i].y, loc[i].z, loc[i].w};
        uint32_t outv[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          outv[k] = pack_bf16(H[2 * k], H[2 * k + 1]);
          const float2 l = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&in[k]));
          H[2 * k] = T[i] * H[2 * k] + l.x, H[2 * k + 1] = T[i] * H[2 * k + 1] + l.y;
        }
        *reinterpret_cast<uint4*>(base + int64_t(c) * kElems) =
            make_uint4(outv[0], outv[1], outv[2], outv[3]);
      }
    }
  }
}

// acc[16 rows × 64 cols] += A·B over kK, A: 16 rows at a (row-major, ld lda), scaled per row by
// (s_lo, s_hi) when kScale; B = [k, n] row-major at b (ld ldb), n offset n0.
template <int kK, bool kScale>
__device__ __forceinline__ void mma_rows_kn(float (&acc)[8][4], const __nv_bfloat16* a, int lda,
                                            const __nv_bfloat16* b, int ldb, int n0, float s_lo = 1.0f,
                                            float s_hi = 1.0f) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks) {
    uint32_t af[4];
    ldsm_x4(af, a + (lane & 15) * lda + ks * 16 + (lane >> 4) * 8);
    if constexpr (kScale) {
      af[0] = scale_bf16x2(af[0], s_lo, s_lo), af[2] = scale_bf16x2(af[2], s_lo, s_lo);
      af[1] = scale_bf16x2(af[1], s_hi, s_hi), af[3] = scale_bf16x2(af[3], s_hi, s_hi);
    }
#pragma unroll
    for (int pt = 0; pt < 4; ++pt) {
      uint32_t bf[4];
      ldsm_x4_trans(
          bf, b + (ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ldb + n0 + pt * 16 + (lane >> 4) * 8);
      mma_bf16(acc[2 * pt], af, bf[0], bf[1]);
      mma_bf16(acc[2 * pt + 1], af, bf[2], bf[3]);
    }
  }
}

// acc[16 rows × 64 cols] += A·Bᵀ over kK for the 16-column tiles st in tile_mask (bit st), A: 16
// rows at a (ld lda); Bᵀ = [n, k] row-major at b (ld ldb).
template <int kK>
__device__ __forceinline__ void mma_rows_nk(float (&acc)[8][4], const __nv_bfloat16* a, int lda,
                                            const __nv_bfloat16* b, int ldb, int tile_mask) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks) {
    uint32_t af[4];
    ldsm_x4(af, a + (lane & 15) * lda + ks * 16 + (lane >> 4) * 8);
#pragma unroll
    for (int st = 0; st < 4; ++st) {
      if (!((tile_mask >> st) & 1)) continue;
      uint32_t bf[4];
      ldsm_x4(bf, b + (st * 16 + (lane & 7) + (lane >> 4) * 8) * ldb + ks * 16 + ((lane >> 3) & 1) * 8);
      mma_bf16(acc[2 * st], af, bf[0], bf[1]);
      mma_bf16(acc[2 * st + 1], af, bf[2], bf[3]);
    }
  }
}

// acc[16 rows (j) × 16·kTiles cols, from accumulator tile kNt0] += Aᵀ·B over the token tiles
// kt ≥ rt, where A = [i, j] is stored row-major at a (ld kLdQ; columns j of row tile rt) and
// B = [i, n] at b (ld ldb), n offset n0.
template <int kTiles, int kNt0>  // (compile-time accumulator indices keep acc in registers)
__device__ __forceinline__ void mma_causal_tn(float (&acc)[8][4], const __nv_bfloat16* a,
                                              const __nv_bfloat16* b, int ldb, int n0, int rt) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kt = 0; kt < kQ / 16; ++kt) {
    if (kt < rt) continue;
    uint32_t af[4];
    ldsm_x4_trans(af, a + (kt * 16 + (lane & 7) + (lane >> 4) * 8) * kLdQ + rt * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
    for (int pt = 0; pt < kTiles; ++pt) {
      uint32_t bf[4];
      ldsm_x4_trans(
          bf, b + (kt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ldb + n0 + pt * 16 + (lane >> 4) * 8);
      mma_bf16(acc[kNt0 + 2 * pt], af, bf[0], bf[1]);
      mma_bf16(acc[kNt0 + 2 * pt + 1], af, bf[2], bf[3]);
    }
  }
}

// Σ over the 4 lanes of a quad (the lanes holding one accumulator row).
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Σ over the 8 lanes holding one accumulator column (same lane & 3).
__device__ __forceinline__ float column_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 4);
  v += __shfl_xor_sync(0xffffffffu, v, 8);
  return v + __shfl_xor_sync(0xffffffffu, v, 16);
}

}  // namespace mamba::ops::cuda::chunk_bwd
