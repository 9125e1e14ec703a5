// Building blocks of the chunked scan backwards on tensor cores (ssd_bwd_fast.cu for Mamba-2,
// mamba3_scan_bwd_fast.cu for the Mamba-3 SISO scan): 64-token chunks, head_dim 64, d_state 128,
// bf16 tiles in shared memory (rows padded by 8 elements), fp32 accumulation. Fragment layouts as
// in ssd_mma.cuh. Device code only.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

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

// load_bf16 for a source of T: float (rounded to bf16) or __nv_bfloat16 (copied as it is).
template <int kRows, int kCols, int kLd, int kNThreads, class T>
__device__ __forceinline__ void load_tile(__nv_bfloat16* dst, const T* src, int64_t row_stride,
                                          int valid_rows) {
  if constexpr (std::is_same_v<T, float>) {
    load_bf16<kRows, kCols, kLd, kNThreads>(dst, src, row_stride, valid_rows);
  } else {
    constexpr int kVec = kCols / 8;
    static_assert(kRows * kVec % kNThreads == 0, "whole rounds of 16-byte loads");
#pragma unroll  // all loads in flight before the first store
    for (int j = 0; j < kRows * kVec / kNThreads; ++j) {
      const int i = threadIdx.x + j * kNThreads, r = i / kVec, col = (i % kVec) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r < valid_rows) v = *reinterpret_cast<const uint4*>(src + r * row_stride + col);
      *reinterpret_cast<uint4*>(dst + r * kLd + col) = v;
    }
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

// ---- The chunk states in memory, [batch·head, chunk, head_dim, d_state] bf16 ----
// The state pass runs over superchunks of kSuper chunks (a quarter of the chain and of the bytes it
// moves): the local-state kernels carry each superchunk's prefix in fp32 registers and store, for
// chunk c of superchunk [first, last],
//   forward (S): slot c > first: the state entering c from the superchunk's own chunks (zero state
//     entering first); slot first: the superchunk's total, which the pass replaces by the state
//     entering the superchunk, H;
//   reverse (dS): slot c < last: the gradient of the state leaving c from the superchunk's later
//     chunks; slot last: their total including chunk first, which the pass replaces by the gradient
//     of the state leaving the superchunk, G_out.
// The fused kernels complete a chunk's states as S_in[c] = D_c·H + slot c (c > first) and
// G[c] = E_c·G_out + slot c (c < last), D_c and E_c the decays between c and the superchunk's ends
// (super_decays): one more bf16 read, mostly from L2, instead of a pass writing every chunk's state.
constexpr int kSuper = 4;
constexpr int kPassVec = 8;  // state elements per pass thread (16 bytes)

__device__ __forceinline__ int super_first(int c) {
  return c - c % kSuper;
}
__device__ __forceinline__ int super_last(int c, int nc) {
  return min(super_first(c) + kSuper, nc) - 1;
}

// (D_c, E_c) of chunk c, from the head's chunk log2 decays dec[0, nc).
__device__ __forceinline__ float2 super_decays(const float* dec, int c, int nc) {
  const int first = super_first(c), last = super_last(c, nc);
  float in = 0.0f, out = 0.0f;
  for (int i = first; i < c; ++i) in += dec[i];
  for (int i = c + 1; i <= last; ++i) out += dec[i];
  return make_float2(exp2f(in), exp2f(out));
}

// The pass over superchunks, per (batch·head) = blockIdx.y and kPassVec state elements a thread:
// blockIdx.z 0: S's superchunk totals become H; 1: dS's become G_out. decay: the chunks' log2
// decays [batch·head, nc]. fp32 carry; eight superchunks' loads in flight per thread (the chain is
// latency-bound). Grid (ceil(kElems / kPassVec / 256), batch·heads, 2), 256 threads.
template <int kElems>  // a template: defined in every including file without clashing symbols
__global__ void __launch_bounds__(256)
    state_pass_kernel(int nc, __nv_bfloat16* S, __nv_bfloat16* dS, const float* decay) {
  const int e = (blockIdx.x * blockDim.x + threadIdx.x) * kPassVec;
  if (e >= kElems) return;
  const int bh = blockIdx.y, ns = (nc + kSuper - 1) / kSuper;
  const bool reverse = blockIdx.z == 1;
  __nv_bfloat16* base = (reverse ? dS : S) + int64_t(bh) * nc * kElems + e;
  const float* dec = decay + int64_t(bh) * nc;
  constexpr int kAhead = 8;
  float H[kPassVec] = {};
  for (int i0 = 0; i0 < ns; i0 += kAhead) {
    uint4 loc[kAhead];
    float T[kAhead];
    int slot[kAhead];
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      const int k = reverse ? ns - 1 - (i0 + i) : i0 + i;
      if (i0 + i < ns) {
        const int first = k * kSuper, last = min(first + kSuper, nc) - 1;
        slot[i] = reverse ? last : first;
        loc[i] = __ldcs(reinterpret_cast<const uint4*>(base + int64_t(slot[i]) * kElems));
        float d = 0.0f;
        for (int c = first; c <= last; ++c) d += dec[c];
        T[i] = exp2f(d);
      }
    }
#pragma unroll
    for (int i = 0; i < kAhead; ++i) {
      if (i0 + i < ns) {
        const uint32_t in[4] = {loc[i].x, loc[i].y, loc[i].z, loc[i].w};
        uint32_t outv[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          outv[k] = pack_bf16(H[2 * k], H[2 * k + 1]);
          const float2 l = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&in[k]));
          H[2 * k] = T[i] * H[2 * k] + l.x, H[2 * k + 1] = T[i] * H[2 * k + 1] + l.y;
        }
        *reinterpret_cast<uint4*>(base + int64_t(slot[i]) * kElems) =
            make_uint4(outv[0], outv[1], outv[2], outv[3]);
      }
    }
  }
}

// A chunk's superchunk boundary states (H for S_in, G_out for G; null where slot c is already the
// whole state), read into registers ahead of complete_states, kReads 16-byte vectors a thread.
template <int kNThreads>
struct BoundaryStates {
  static constexpr int kReads = kP * kN / 8 / kNThreads;
  uint4 h[kReads], g[kReads];
  __device__ uint4 h_at(int j, int) const { return h[j]; }
  __device__ uint4 g_at(int j, int) const { return g[j]; }
};

// The boundary states in shared memory ([head_dim, d_state] rows of kLdN; null: none).
struct SharedBoundaryStates {
  const __nv_bfloat16 *h, *g;
  __device__ uint4 h_at(int, int at) const {
    return h ? *reinterpret_cast<const uint4*>(h + at) : make_uint4(0, 0, 0, 0);
  }
  __device__ uint4 g_at(int, int at) const {
    return g ? *reinterpret_cast<const uint4*>(g + at) : make_uint4(0, 0, 0, 0);
  }
};

template <int kNThreads>
__device__ __forceinline__ void load_boundary_states(BoundaryStates<kNThreads>& bs, const __nv_bfloat16* h,
                                                     const __nv_bfloat16* g) {
#pragma unroll
  for (int j = 0; j < BoundaryStates<kNThreads>::kReads; ++j) {
    const int i = (threadIdx.x + j * kNThreads) * 8;
    bs.h[j] = h ? __ldg(reinterpret_cast<const uint4*>(h + i)) : make_uint4(0, 0, 0, 0);
    bs.g[j] = g ? __ldg(reinterpret_cast<const uint4*>(g + i)) : make_uint4(0, 0, 0, 0);
  }
}

// s_in += D·H and s_g += E·G_out in shared memory ([head_dim, d_state] bf16, rows of kLdN), rounded
// once from fp32; returns this thread's part of Σ S_in∘G from the fp32 values (the chunk decay's
// gradient, before the bf16 rounding of the mma operands).
// bs: a BoundaryStates<kNThreads> or SharedBoundaryStates.
template <int kNThreads, class Bound>
__device__ __forceinline__ float complete_states(__nv_bfloat16* s_in, __nv_bfloat16* s_g, const Bound& bs,
                                                 float D, float E) {
  float dot = 0.0f;
#pragma unroll
  for (int j = 0; j < kP * kN / 8 / kNThreads; ++j) {
    const int i = (threadIdx.x + j * kNThreads) * 8, at = (i / kN) * kLdN + i % kN;
    uint4 sv = *reinterpret_cast<const uint4*>(s_in + at), gv = *reinterpret_cast<const uint4*>(s_g + at);
    const uint4 hv = bs.h_at(j, at), ov = bs.g_at(j, at);
    uint32_t* sw = &sv.x;
    uint32_t* gw = &gv.x;
    const uint32_t* hw = &hv.x;
    const uint32_t* ow = &ov.x;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&sw[k]));
      const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&gw[k]));
      const float2 ha = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&hw[k]));
      const float2 hb = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&ow[k]));
      const float s0 = a.x + D * ha.x, s1 = a.y + D * ha.y, g0 = b.x + E * hb.x, g1 = b.y + E * hb.y;
      dot += s0 * g0 + s1 * g1;
      sw[k] = pack_bf16(s0, s1), gw[k] = pack_bf16(g0, g1);
    }
    *reinterpret_cast<uint4*>(s_in + at) = sv, *reinterpret_cast<uint4*>(s_g + at) = gv;
  }
  return dot;
}

// acc[16 rows × 16·kTiles cols] += A·B over kK, A: 16 rows at a (row-major, ld lda), scaled per row
// by (s_lo, s_hi) when kScale; B = [k, n] row-major at b (ld ldb), n offset n0.
template <int kK, bool kScale, int kTiles = 4>
__device__ __forceinline__ void mma_rows_kn(float (&acc)[2 * kTiles][4], const __nv_bfloat16* a, int lda,
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
    for (int pt = 0; pt < kTiles; ++pt) {
      uint32_t bf[4];
      ldsm_x4_trans(
          bf, b + (ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ldb + n0 + pt * 16 + (lane >> 4) * 8);
      mma_bf16(acc[2 * pt], af, bf[0], bf[1]);
      mma_bf16(acc[2 * pt + 1], af, bf[2], bf[3]);
    }
  }
}

// Stores (v0, v1) as a bf16 pair hi + lo (about 16 significant bits: the Q×Q tiles whose single
// bf16 rounding was the fused backwards' largest error) at hi and lo.
__device__ __forceinline__ void store_bf16_pair(__nv_bfloat16* hi, __nv_bfloat16* lo, float v0, float v1) {
  const uint32_t h = pack_bf16(v0, v1);
  const float2 hf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&h));
  *reinterpret_cast<uint32_t*>(hi) = h;
  *reinterpret_cast<uint32_t*>(lo) = pack_bf16(v0 - hf.x, v1 - hf.y);
}

// mma_rows_kn<kK, false> with A = a_hi + a_lo (store_bf16_pair tiles, same layout): the B fragments
// are loaded once for both.
template <int kK>
__device__ __forceinline__ void mma_rows_kn_pair(float (&acc)[8][4], const __nv_bfloat16* a_hi,
                                                 const __nv_bfloat16* a_lo, int lda, const __nv_bfloat16* b,
                                                 int ldb, int n0) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks) {
    const int at = (lane & 15) * lda + ks * 16 + (lane >> 4) * 8;
    uint32_t ah[4], al[4];
    ldsm_x4(ah, a_hi + at);
    ldsm_x4(al, a_lo + at);
#pragma unroll
    for (int pt = 0; pt < 4; ++pt) {
      uint32_t bf[4];
      ldsm_x4_trans(
          bf, b + (ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ldb + n0 + pt * 16 + (lane >> 4) * 8);
      mma_bf16(acc[2 * pt], ah, bf[0], bf[1]);
      mma_bf16(acc[2 * pt + 1], ah, bf[2], bf[3]);
      mma_bf16(acc[2 * pt], al, bf[0], bf[1]);
      mma_bf16(acc[2 * pt + 1], al, bf[2], bf[3]);
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
// B = [i, n] at b (ld ldb), n offset n0. a_lo (when not null): A's low half (store_bf16_pair).
template <int kTiles, int kNt0>  // (compile-time accumulator indices keep acc in registers)
__device__ __forceinline__ void mma_causal_tn(float (&acc)[8][4], const __nv_bfloat16* a,
                                              const __nv_bfloat16* b, int ldb, int n0, int rt,
                                              const __nv_bfloat16* a_lo = nullptr) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kt = 0; kt < kQ / 16; ++kt) {
    if (kt < rt) continue;
    const int at = (kt * 16 + (lane & 7) + (lane >> 4) * 8) * kLdQ + rt * 16 + ((lane >> 3) & 1) * 8;
    uint32_t af[4], al[4] = {};
    ldsm_x4_trans(af, a + at);
    if (a_lo) ldsm_x4_trans(al, a_lo + at);
#pragma unroll
    for (int pt = 0; pt < kTiles; ++pt) {
      uint32_t bf[4];
      ldsm_x4_trans(
          bf, b + (kt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ldb + n0 + pt * 16 + (lane >> 4) * 8);
      mma_bf16(acc[kNt0 + 2 * pt], af, bf[0], bf[1]);
      mma_bf16(acc[kNt0 + 2 * pt + 1], af, bf[2], bf[3]);
      if (a_lo) {
        mma_bf16(acc[kNt0 + 2 * pt], al, bf[0], bf[1]);
        mma_bf16(acc[kNt0 + 2 * pt + 1], al, bf[2], bf[3]);
      }
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
