// Backward of SSD on tensor cores (bf16 operands, fp32 accumulation) for head_dim 64, d_state 128,
// in the chunked form of ssd_bwd_gemm.cu's header (same symbols) with 64-token chunks, where the
// Q×Q terms (C·Bᵀ, the decay mask L, M = C·Bᵀ∘L and dM = dy·Xdᵀ) never leave the chip:
//   1. chunk_local_state_kernel: per (batch, head, superchunk of kSuper chunks) the chunks' local
//      states S_loc = (w∘Xd)ᵀ·B and (e∘dy)ᵀ·C summed into the superchunk's prefixes (the layout in
//      ssd_bwd_tiles.cuh), and each chunk's log2 decay;
//   2. state_pass_kernel: forward S_in and reverse G = dS_in of the next chunk at the superchunks'
//      boundaries (elementwise, fp32 carry, bf16 in memory: the states are most of the backward's
//      memory traffic);
//   3. chunk_bwd_kernel: per (batch, group, chunk), the group's heads one after another: the
//      chunk's S_in and G completed from the boundary states, dx, ddt,
//      the dcs → dA terms, dD, and dB, dC summed over the heads in registers (deterministic, no
//      per-head buffers; only dA and dD take atomics, one per block and head).
// x, B, C and dy are fp32 tensors: kernel 1 rounds their tiles to bf16 as it copies them to shared
// memory (plain vector loads: cp.async cannot convert) and writes x and dy in bf16 for kernel 3,
// which streams every per-head operand (x, dy, S_in, G) by cp.async, the next head's while a head
// computes.
#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/ssd/ssd.h"
#include "ops/ssd/ssd_bwd_tiles.cuh"
#include "ops/ssd/ssd_mma.cuh"

namespace mamba::ops {

namespace {

using namespace cuda::chunk_bwd;
using cuda::pack_bf16;

constexpr int kWarps = 4;  // kernel 1: warp w owns the state rows (head_dim) [16w, 16w+16)
constexpr int kThreads = 32 * kWarps;

struct Dims {
  int batch, L, H, G, hpg, nc;
  bool d_per_channel;
};

__device__ __forceinline__ int64_t state_offset(const Dims& z, int b, int h, int c) {
  return ((int64_t(b) * z.H + h) * z.nc + c) * (kP * kN);
}

// A warp's lane l: dt of the chunk's tokens 2l and 2l+1 (0 past seq_len).
__device__ __forceinline__ float2 load_chunk_dt(const float* dt, int64_t dt_stride, int valid) {
  const int lane = threadIdx.x & 31;
  float d[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) d[i] = 2 * lane + i < valid ? dt[(2 * lane + i) * dt_stride] : 0.0f;
  return make_float2(d[0], d[1]);
}

// Warp 0: the chunk's dt (load_chunk_dt) and inclusive cumsum of dt·A in log2 units; lane l holds
// tokens 2l and 2l+1.
__device__ void chunk_cumsum(float2 dl, float A, float* s_dt, float* s_a2) {
  const int lane = threadIdx.x & 31;
  const float d[2] = {dl.x, dl.y};
  const float l0 = d[0] * A * kLog2e, l1 = d[1] * A * kLog2e;
  float run = l0 + l1;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float up = __shfl_up_sync(0xffffffffu, run, off);
    if (lane >= off) run += up;
  }
  s_dt[2 * lane] = d[0], s_dt[2 * lane + 1] = d[1];
  s_a2[2 * lane] = run - l1, s_a2[2 * lane + 1] = run;
}

// ---- 1: per chunk, Σ_t wt_t·v_tᵀ k_t: forward (v, k, wt) = (x, B, exp(cs_last − cs_t)·dt_t), whose
// chunk decay it also stores; reverse (dy, C, exp(cs_t)). ----
struct LocalStateSmem {
  __nv_bfloat16 v[kQ * kLdP];  // [token, head_dim]
  __nv_bfloat16 k[kQ * kLdN];  // [token, d_state]
  float dt[kQ], a2[kQ], wt[kQ];
};

// T: the inputs' type (float, or __nv_bfloat16 tensors taken as they are; then v16 is not written).
template <bool kReverse, class T>  // 3 blocks an SM: the fp32 prefix stays live across the tile loads
__global__ void __launch_bounds__(kThreads, 3)
    chunk_local_state_kernel(Dims z, const T* v, const T* k, const float* dt, const float* A,
                             __nv_bfloat16* out, float* decay, __nv_bfloat16* v16) {
  __shared__ LocalStateSmem s;
  const int h = blockIdx.y, b = blockIdx.z, g = h / z.hpg, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int first = blockIdx.x * kSuper, last = min(first + kSuper, z.nc) - 1;
  // The superchunk's prefix (ssd_bwd_tiles.cuh): chunk by chunk, forward from first or back from last.
  float acc[kN / 8][4] = {};
  for (int step = 0; step <= last - first; ++step) {
    const int c = kReverse ? last - step : first + step, t0 = c * kQ, valid = min(kQ, z.L - t0);
    if (step > 0) __syncthreads();  // the previous chunk's tiles are no longer read
    load_tile<kQ, kP, kLdP, kThreads>(s.v, v + ((int64_t(b) * z.L + t0) * z.H + h) * kP, int64_t(z.H) * kP,
                                      valid);
    load_tile<kQ, kN, kLdN, kThreads>(s.k, k + ((int64_t(b) * z.L + t0) * z.G + g) * kN, int64_t(z.G) * kN,
                                      valid);
    if (warp == 0) {
      chunk_cumsum(load_chunk_dt(dt + (int64_t(b) * z.L + t0) * z.H + h, z.H, valid), A[h], s.dt, s.a2);
      __syncwarp();
      const float end = s.a2[kQ - 1];
      for (int t = lane; t < kQ; t += 32)
        s.wt[t] = kReverse ? exp2f(s.a2[t]) : exp2f(fminf(end - s.a2[t], 0.0f)) * s.dt[t];
      if (!kReverse && lane == 0) decay[(int64_t(b) * z.H + h) * z.nc + c] = end;
    }
    __syncthreads();
    if constexpr (std::is_same_v<T, float>) {  // v in bf16 for the fused kernel's async copies
      constexpr int kVec = kP / 8;
      __nv_bfloat16* dst = v16 + ((int64_t(b) * z.L + t0) * z.H + h) * kP;
#pragma unroll
      for (int j = 0; j < kQ * kVec / kThreads; ++j) {
        const int i = threadIdx.x + j * kThreads, r = i / kVec, col = (i % kVec) * 8;
        if (r < valid)
          *reinterpret_cast<uint4*>(dst + int64_t(r) * z.H * kP + col) =
              *reinterpret_cast<const uint4*>(&s.v[r * kLdP + col]);
      }
    }
    if (step > 0) store_state_bf16(out + state_offset(z, b, h, c), acc);
    const float decay_c = exp2f(s.a2[kQ - 1]);  // the chunk's decay
#pragma unroll
    for (int nt = 0; nt < kN / 8; ++nt)
      acc[nt][0] *= decay_c, acc[nt][1] *= decay_c, acc[nt][2] *= decay_c, acc[nt][3] *= decay_c;
    accumulate_state(acc, s.v, s.k, s.wt);
  }
  store_state_bf16(out + state_offset(z, b, h, kReverse ? last : first), acc);
}

// ---- 3: the fused per-chunk backward. Warp w works on the rows [16·rt, 16·rt + 16) of the chunk
// (rt = w % 4) and half (w / 4) of each product's columns, so that two warps share each tensor-core
// unit. dB and dC, summed over the group's heads, stay in the warps' registers (their rows × their
// d_state half: 64 fp32 a thread) until the block ends. One block an SM (registers). ----
constexpr int kFusedWarps = 8;
constexpr int kFusedThreads = 32 * kFusedWarps;
constexpr int kSplit = kFusedWarps / 4;  // warps per row tile
static_assert(kSplit == 2, "the register dB, dC sums assume a row tile's columns in two halves");

struct BwdSmem {
  __nv_bfloat16 b[kQ * kLdN], c[kQ * kLdN];           // the group's B, C [token, d_state]
  __nv_bfloat16 x[2][kQ * kLdP], dy[2][kQ * kLdP];    // x, dy [token, head_dim]: this head's, the next's
  __nv_bfloat16 s_in[2][kP * kLdN], g[2][kP * kLdN];  // S_in, G [head_dim, d_state]: this head's, the next's
  __nv_bfloat16 hb[kP * kLdN], gb[kP * kLdN];         // the superchunk's H and G_out for S_in, G
  // M and dM∘L [token i, token j] as bf16 pairs hi + lo (store_bf16_pair), tiles i ≥ j only.
  __nv_bfloat16 m[kQ * kLdQ], dml[kQ * kLdQ], m_lo[kQ * kLdQ], dml_lo[kQ * kLdQ];
  // Per token: dt, cumsum; column sums of dM∘M per warp; per column half: the dcs terms, ω, Σ x·dXd.
  float dt[kQ], a2[kQ], col[kFusedWarps][kQ], part[kSplit][kQ], om[kSplit][kQ], sx[kSplit][kQ], red[32];
};

template <class T>  // the type of B and C (float or __nv_bfloat16)
struct FusedArgs {
  const T *B, *C;
  const float *dt, *A, *D;
  const __nv_bfloat16 *x,
      *dy;  // bf16 inputs, or rounded by chunk_local_state_kernel [batch, seq_len, n_heads, head_dim]
  // The superchunk prefixes and boundary states [batch, n_heads, n_chunks, head_dim, d_state].
  const __nv_bfloat16 *S, *dS;
  const float* decay;  // the chunks' log2 decays [batch, n_heads, n_chunks]
  float *dx, *ddt, *dA, *dB, *dC, *dD;
};

// One head's chunk state [head_dim, d_state] (bf16, contiguous) → shared rows of kLdN, async.
__device__ __forceinline__ void copy_state_async(__nv_bfloat16* dst, const __nv_bfloat16* src) {
  constexpr int kVec = kN / 8;
  static_assert(kP * kVec % kFusedThreads == 0, "whole rounds of copies");
#pragma unroll
  for (int j = 0; j < kP * kVec / kFusedThreads; ++j) {
    const int i = threadIdx.x + j * kFusedThreads, r = i / kVec, col = (i % kVec) * 8;
    cuda::cp_async16(dst + r * kLdN + col, src + r * kN + col, true);
  }
}

// A head's 64-token tile [token, head_dim] (bf16, rows of row_stride) → shared rows of kLdP, async;
// zero rows past seq_len.
__device__ __forceinline__ void copy_tile_async(__nv_bfloat16* dst, const __nv_bfloat16* src,
                                                int64_t row_stride, int valid) {
  constexpr int kVec = kP / 8;
  static_assert(kQ * kVec % kFusedThreads == 0, "whole rounds of copies");
#pragma unroll
  for (int j = 0; j < kQ * kVec / kFusedThreads; ++j) {
    const int i = threadIdx.x + j * kFusedThreads, r = i / kVec, col = (i % kVec) * 8;
    cuda::cp_async16(dst + r * kLdP + col, r < valid ? src + r * row_stride + col : src, r < valid);
  }
}

// Starts the async copies of head h's x, dy tiles and chunk states into buffer buf, as one group.
template <class T>
__device__ __forceinline__ void load_head_async(const Dims& z, const FusedArgs<T>& f, BwdSmem& s, int buf,
                                                int b, int h, int c, int valid) {
  const int64_t tok = (int64_t(b) * z.L + int64_t(c) * kQ) * z.H + h;
  copy_tile_async(s.x[buf], f.x + tok * kP, int64_t(z.H) * kP, valid);
  copy_tile_async(s.dy[buf], f.dy + tok * kP, int64_t(z.H) * kP, valid);
  copy_state_async(s.s_in[buf], f.S + state_offset(z, b, h, c));
  copy_state_async(s.g[buf], f.dS + state_offset(z, b, h, c));
  cuda::cp_async_commit();
}

// Starts the async copies of head h's superchunk boundary states into hb (c > first) and gb
// (c < last), as one group (empty when c is both).
template <class T>
__device__ __forceinline__ void load_boundary_async(const Dims& z, const FusedArgs<T>& f, BwdSmem& s, int b,
                                                    int h, int c, int first, int last) {
  if (c > first) copy_state_async(s.hb, f.S + state_offset(z, b, h, first));
  if (c < last) copy_state_async(s.gb, f.dS + state_offset(z, b, h, last));
  cuda::cp_async_commit();
}

template <class T>
__global__ void __launch_bounds__(kFusedThreads, 1) chunk_bwd_kernel(Dims z, FusedArgs<T> f) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  BwdSmem& s = *reinterpret_cast<BwdSmem*>(smem_raw);
  const int c = blockIdx.x, grp = blockIdx.y, b = blockIdx.z, t0 = c * kQ, valid = min(kQ, z.L - t0);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, qd = lane & 3;
  const int rt = warp & 3, half = warp >> 2;  // row tile; column half of each product
  const int r0 = rt * 16, i_lo = r0 + gq, i_hi = i_lo + 8;
  // Causal 16-column tiles st ≤ rt split between the halves by parity; head_dim tiles by halves.
  const int causal_mask = (half ? 0xA : 0x5) & ((2 << rt) - 1);
  const int p_mask = half ? 0xC : 0x3, n0 = half * 64;  // n0: the warp's d_state half
  // Whether accumulator tile nt (8 columns of head_dim) is the warp's.
  auto p_tile_mine = [&](int nt) { return (nt >> 2) == half; };
  const int64_t bc_rows = (int64_t(b) * z.L + t0) * z.G + grp;  // (b, t0, group) row of B, C
  load_tile<kQ, kN, kLdN, kFusedThreads>(s.b, f.B + bc_rows * kN, int64_t(z.G) * kN, valid);
  load_tile<kQ, kN, kLdN, kFusedThreads>(s.c, f.C + bc_rows * kN, int64_t(z.G) * kN, valid);
  __syncthreads();
  // C·Bᵀ for the warp's rows i and causal tiles: shared by the group's heads.
  float cb[8][4] = {};
  float dB[8][4] = {}, dC[8][4] = {};  // Σ over the heads: the warp's rows, d_state [n0, n0 + 64)
  mma_rows_nk<kN>(cb, &s.c[r0 * kLdN], kLdN, s.b, kLdN, causal_mask);
  // The group's heads' tiles and states stream in one head ahead (cp.async: a group of tiles and
  // chunk states a head, issued as the previous head starts, and a group of boundary states, issued
  // once the previous head has completed its states); dt and A by warp 0 into registers.
  const int first = super_first(c), last = super_last(c, z.nc);
  load_head_async(z, f, s, 0, b, grp * z.hpg, c, valid);
  load_boundary_async(z, f, s, b, grp * z.hpg, c, first, last);
  float2 dt_next = make_float2(0.0f, 0.0f);
  float A_next = 0.0f;
  if (warp == 0) {
    dt_next = load_chunk_dt(f.dt + (int64_t(b) * z.L + t0) * z.H + grp * z.hpg, z.H, valid);
    A_next = f.A[grp * z.hpg];
  }

  for (int hk = 0; hk < z.hpg; ++hk) {
    const int h = grp * z.hpg + hk, buf = hk & 1;
    const __nv_bfloat16 *s_in = s.s_in[buf], *s_g = s.g[buf], *s_x = s.x[buf], *s_dy = s.dy[buf];
    if (hk + 1 < z.hpg)  // buffer buf ^ 1 was last read before the previous head's closing barrier
      load_head_async(z, f, s, buf ^ 1, b, h + 1, c, valid);
    else
      cuda::cp_async_commit();  // an empty group: two groups a head, so wait<1> below holds
    const int64_t tok = (int64_t(b) * z.L + t0) * z.H + h;  // (b, t0, h) row of dx, dt, ddt
    const float2 de = super_decays(f.decay + (int64_t(b) * z.H + h) * z.nc, c, z.nc);
    for (int i = threadIdx.x; i < kFusedWarps * kQ; i += kFusedThreads) (&s.col[0][0])[i] = 0.0f;
    if (warp == 0) {
      chunk_cumsum(dt_next, A_next, s.dt, s.a2);
      if (hk + 1 < z.hpg) dt_next = load_chunk_dt(f.dt + tok + 1, z.H, valid), A_next = f.A[h + 1];
    }
    cuda::cp_async_wait<1>();  // this head's copies have landed (only the next head's tiles may not)
    __syncthreads();
    // dT = Σ G∘S_in: the gradient of the chunk decay T (block_sum's barriers publish the states).
    const SharedBoundaryStates bound{c > first ? s.hb : nullptr, c < last ? s.gb : nullptr};
    const float dT = mamba::cuda::block_sum(
        complete_states<kFusedThreads>(s.s_in[buf], s.g[buf], bound, de.x, de.y), s.red);
    if (hk + 1 < z.hpg)  // hb, gb were read before block_sum's barriers
      load_boundary_async(z, f, s, b, h + 1, c, first, last);
    else
      cuda::cp_async_commit();

    const float a_lo = s.a2[i_lo], a_hi = s.a2[i_hi], a_last = s.a2[kQ - 1];
    const float e_lo = exp2f(a_lo), e_hi = exp2f(a_hi);
    const float w_lo = exp2f(fminf(a_last - a_lo, 0.0f)), w_hi = exp2f(fminf(a_last - a_hi, 0.0f));
    const float dt_lo = s.dt[i_lo], dt_hi = s.dt[i_hi];
    // dM = dy·Xdᵀ = (dy·xᵀ)∘dt_j; M = C·Bᵀ∘L. The warp's rows i and causal tiles.
    float row_lo = 0.0f, row_hi = 0.0f;
    {
      float dyx[8][4] = {};
      mma_rows_nk<kP>(dyx, &s_dy[r0 * kLdP], kLdP, s_x, kLdP, causal_mask);
#pragma unroll
      for (int st = 0; st < 4; ++st) {
        if (!((causal_mask >> st) & 1)) continue;
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int nt = 2 * st + hf, j = st * 16 + hf * 8 + 2 * qd;
          float col_w[2], m[4], dml[4];  // m, dml: C-fragment order (row lo: 0, 1; hi: 2, 3)
#pragma unroll
          for (int jj = 0; jj < 2; ++jj) {
            const float a_j = s.a2[j + jj], dt_j = s.dt[j + jj];
            // Selects, not products: exp2 of a positive difference (j > i) may overflow.
            const float l_lo = j + jj <= i_lo ? exp2f(fminf(a_lo - a_j, 0.0f)) : 0.0f;
            const float l_hi = j + jj <= i_hi ? exp2f(fminf(a_hi - a_j, 0.0f)) : 0.0f;
            const float dm_lo = dyx[nt][jj] * dt_j, dm_hi = dyx[nt][2 + jj] * dt_j;
            m[jj] = cb[nt][jj] * l_lo, m[2 + jj] = cb[nt][2 + jj] * l_hi;
            row_lo += dm_lo * m[jj], row_hi += dm_hi * m[2 + jj];
            col_w[jj] = dm_lo * m[jj] + dm_hi * m[2 + jj];
            dml[jj] = dm_lo * l_lo, dml[2 + jj] = dm_hi * l_hi;
          }
          store_bf16_pair(&s.m[i_lo * kLdQ + j], &s.m_lo[i_lo * kLdQ + j], m[0], m[1]);
          store_bf16_pair(&s.m[i_hi * kLdQ + j], &s.m_lo[i_hi * kLdQ + j], m[2], m[3]);
          store_bf16_pair(&s.dml[i_lo * kLdQ + j], &s.dml_lo[i_lo * kLdQ + j], dml[0], dml[1]);
          store_bf16_pair(&s.dml[i_hi * kLdQ + j], &s.dml_lo[i_hi * kLdQ + j], dml[2], dml[3]);
#pragma unroll
          for (int jj = 0; jj < 2; ++jj) {
            const float v = column_sum(col_w[jj]);
            if (gq == 0) s.col[warp][j + jj] = v;
          }
        }
      }
    }
    row_lo = quad_sum(row_lo), row_hi = quad_sum(row_hi);
    __syncthreads();  // M and dM∘L complete

    // Y = dy·S_in (the warp's rows i, its d_state half, 32 columns at a time): dC += e∘Y + dM∘L·B,
    // and ε_i = e_i·Σ_n C∘Y over the half (= e_i·Σ_p dy·(C·S_inᵀ), without a product of its own).
    float eps_lo = 0.0f, eps_hi = 0.0f;
#pragma unroll
    for (int part = 0; part < 2; ++part) {
      float y[4][4] = {};
      mma_rows_kn<kP, false, 2>(y, &s_dy[r0 * kLdP], kLdP, s_in, kLdN, n0 + 32 * part);
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int n = n0 + 32 * part + nt * 8 + 2 * qd;
        const float2 c_lo =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.c[i_lo * kLdN + n]));
        const float2 c_hi =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.c[i_hi * kLdN + n]));
        eps_lo += c_lo.x * y[nt][0] + c_lo.y * y[nt][1], eps_hi += c_hi.x * y[nt][2] + c_hi.y * y[nt][3];
        float(&d)[4] = dC[4 * part + nt];
        d[0] += e_lo * y[nt][0], d[1] += e_lo * y[nt][1], d[2] += e_hi * y[nt][2], d[3] += e_hi * y[nt][3];
      }
    }
    eps_lo = e_lo * quad_sum(eps_lo), eps_hi = e_hi * quad_sum(eps_hi);
#pragma unroll
    for (int st = 0; st < 4; ++st) {  // dM∘L [i, j]·B [j, n] over the tiles j ≤ i (the rest is zero)
      if (st <= rt)
        mma_rows_kn_pair<16>(dC, &s.dml[r0 * kLdQ + st * 16], &s.dml_lo[r0 * kLdQ + st * 16], kLdQ,
                             &s.b[st * 16 * kLdN], kLdN, n0);
    }
    // U = B·Gᵀ; ω_j = w_j·dt_j·Σ_p x·U; dXd = Mᵀ·dy + w∘U: the warp's rows j, head_dim half.
    float om_lo = 0.0f, om_hi = 0.0f, sx_lo = 0.0f, sx_hi = 0.0f;
    {
      float u[8][4] = {};
      mma_rows_nk<kN>(u, &s.b[r0 * kLdN], kLdN, s_g, kLdN, p_mask);
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        if (!p_tile_mine(nt)) continue;
        const int p = nt * 8 + 2 * qd;
        const float2 x_lo =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s_x[i_lo * kLdP + p]));
        const float2 x_hi =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s_x[i_hi * kLdP + p]));
        om_lo += x_lo.x * u[nt][0] + x_lo.y * u[nt][1];
        om_hi += x_hi.x * u[nt][2] + x_hi.y * u[nt][3];
        u[nt][0] *= w_lo, u[nt][1] *= w_lo, u[nt][2] *= w_hi, u[nt][3] *= w_hi;
      }
      om_lo = w_lo * dt_lo * quad_sum(om_lo), om_hi = w_hi * dt_hi * quad_sum(om_hi);
      if (half)  // u is now dXd
        mma_causal_tn<2, 4>(u, s.m, s_dy, kLdP, 32, rt, s.m_lo);
      else
        mma_causal_tn<2, 0>(u, s.m, s_dy, kLdP, 0, rt, s.m_lo);
      // dx = dt·dXd + D·dy; Σ_p x·dXd; dD = Σ dy·x (x, dy as rounded to bf16).
      float* dxg = f.dx + tok * kP;
      const int64_t rs = int64_t(z.H) * kP;
      float dd[8][2] = {};
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        if (!p_tile_mine(nt)) continue;
        const int p = nt * 8 + 2 * qd;
        const float D0 = z.d_per_channel ? f.D[h * kP + p] : f.D[h];
        const float D1 = z.d_per_channel ? f.D[h * kP + p + 1] : f.D[h];
#pragma unroll
        for (int hi = 0; hi < 2; ++hi) {
          const int i = hi ? i_hi : i_lo;
          if (i >= valid) continue;
          const float d = hi ? dt_hi : dt_lo;
          const float2 xv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s_x[i * kLdP + p]));
          const float2 dyv =
              __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s_dy[i * kLdP + p]));
          const float g0 = u[nt][2 * hi], g1 = u[nt][2 * hi + 1];
          *reinterpret_cast<float2*>(dxg + i * rs + p) =
              make_float2(d * g0 + D0 * dyv.x, d * g1 + D1 * dyv.y);
          (hi ? sx_hi : sx_lo) += xv.x * g0 + xv.y * g1;
          dd[nt][0] += dyv.x * xv.x, dd[nt][1] += dyv.y * xv.y;
        }
      }
      sx_lo = quad_sum(sx_lo), sx_hi = quad_sum(sx_hi);
      if (z.d_per_channel) {
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          if (!p_tile_mine(nt)) continue;
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            const float v = column_sum(dd[nt][k]);
            if (gq == 0) atomicAdd(&f.dD[h * kP + nt * 8 + 2 * qd + k], v);
          }
        }
      } else {
        float v = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) v += dd[nt][0] + dd[nt][1];
        v = mamba::cuda::warp_sum(v);
        if (lane == 0) atomicAdd(&f.dD[h], v);
      }
    }
    // dB += (dM∘L)ᵀ·C + (w∘Xd)·G: the warp's rows j, its d_state half.
    mma_causal_tn<4, 0>(dB, s.dml, s.c, kLdN, n0, rt, s.dml_lo);
#pragma unroll
    for (int part = 0; part < 2; ++part) {  // w·dt on the fp32 x·G (a bf16 (w·dt)∘x would round once more)
      float y[4][4] = {};
      mma_rows_kn<kP, false, 2>(y, &s_x[r0 * kLdP], kLdP, s_g, kLdN, n0 + 32 * part);
      const float s_lo = w_lo * dt_lo, s_hi = w_hi * dt_hi;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        float(&d)[4] = dB[4 * part + nt];
        d[0] += s_lo * y[nt][0], d[1] += s_lo * y[nt][1], d[2] += s_hi * y[nt][2], d[3] += s_hi * y[nt][3];
      }
    }
    if (qd == 0) {
      s.part[half][i_lo] = row_lo - om_lo + eps_lo, s.part[half][i_hi] = row_hi - om_hi + eps_hi;
      s.om[half][i_lo] = om_lo, s.om[half][i_hi] = om_hi;
      s.sx[half][i_lo] = sx_lo, s.sx[half][i_hi] = sx_hi;
    }
    __syncthreads();  // part, om, sx, col complete

    // dcs → its reverse cumulative sum da; ddt, dA (warp 0, lane l: tokens 2l, 2l+1).
    if (warp == 0) {
      float dcs[2], om_sum = 0.0f;
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int i = 2 * lane + k;
        float col = 0.0f;
#pragma unroll
        for (int w = 0; w < kFusedWarps; ++w) col += s.col[w][i];
        float part = 0.0f, om = 0.0f;
#pragma unroll
        for (int hf = 0; hf < kSplit; ++hf) part += s.part[hf][i], om += s.om[hf][i];
        dcs[k] = part - col;
        om_sum += om;
      }
      om_sum = mamba::cuda::warp_sum(om_sum);
      // cs_last also carries every ω (through w) and the chunk decay T.
      if (lane == 31) dcs[1] += om_sum + dT * exp2f(a_last);
      float run = dcs[0] + dcs[1];  // suffix sum over lanes ≥ this one
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const float down = __shfl_down_sync(0xffffffffu, run, off);
        if (lane + off < 32) run += down;
      }
      const float da[2] = {run, run - dcs[0]};
      float dA_part = 0.0f;
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int i = 2 * lane + k;
        if (i >= valid) continue;
        const float dak = (t0 + i == 0) ? 0.0f : da[k];  // no state before the first token
        float sx = 0.0f;
#pragma unroll
        for (int hf = 0; hf < kSplit; ++hf) sx += s.sx[hf][i];
        f.ddt[tok + int64_t(i) * z.H] = f.A[h] * dak + sx;
        dA_part += s.dt[i] * dak;
      }
      dA_part = mamba::cuda::warp_sum(dA_part);
      if (lane == 0) atomicAdd(&f.dA[h], dA_part);
    }
    __syncthreads();  // the next head's loads overwrite the tiles, dt and a2
  }
  // dB, dC of the chunk's rows (each block owns its (batch, chunk, group) rows).
  const int64_t rs = int64_t(z.G) * kN;
  float *dBg = f.dB + bc_rows * kN + n0 + 2 * qd, *dCg = f.dC + bc_rows * kN + n0 + 2 * qd;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
    for (int hi = 0; hi < 2; ++hi) {
      const int i = hi ? i_hi : i_lo;
      if (i >= valid) continue;
      *reinterpret_cast<float2*>(dBg + i * rs + nt * 8) = make_float2(dB[nt][2 * hi], dB[nt][2 * hi + 1]);
      *reinterpret_cast<float2*>(dCg + i * rs + nt * 8) = make_float2(dC[nt][2 * hi], dC[nt][2 * hi + 1]);
    }
  }
}

}  // namespace

bool ssd_bwd_fast_supported(const SsdArgs& a) {
  if (a.x.dim() != 4 || a.B.dim() != 4 || a.C.dim() != 4 || a.dt.dim() != 3) return false;
  const int64_t batch = a.x.size(0), L = a.x.size(1), H = a.x.size(2), G = a.B.size(2);
  if (a.x.size(3) != kP || a.B.size(3) != kN || G < 1 || H % G != 0) return false;
  if (a.B.shape() != a.C.shape() || a.B.size(0) != batch || a.B.size(1) != L) return false;
  if (!(a.D.numel() == H || a.D.numel() == H * kP)) return false;
  // x, B, C: all f32 or all bf16 (taken as they are: no rounding pass); dt, A, D f32.
  const DType in = a.x.dtype();
  if (!(in == DType::f32 || in == DType::bf16) || a.B.dtype() != in || a.C.dtype() != in) return false;
  for (const Tensor* t : {&a.dt, &a.A, &a.D})
    if (t->dtype() != DType::f32) return false;
  for (const Tensor* t : {&a.x, &a.dt, &a.A, &a.B, &a.C, &a.D})
    if (!t->is_contiguous()) return false;
  // Grid limits (y: groups, batch·heads; z: batch) and 32-bit token indices inside a chunk.
  if (!(batch <= 65535 && G <= 65535 && batch * H <= 65535 && L < (int64_t(1) << 30))) return false;
  static const bool smem_fits = [] {  // the fused kernel's shared memory (~212 KiB: sm_90)
    int device = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return static_cast<size_t>(optin) >= sizeof(BwdSmem);
  }();
  return smem_fits;
}

// ssd_bwd_gemm.cu: the arguments checked on the device and the gradients allocated.
SsdGrads ssd_bwd_cuda_outputs(const SsdArgs& a, const Tensor& dy_in);

namespace {

// The four launches for inputs x, B, C, dy of type T (float, or __nv_bfloat16 taken as they are).
template <class T>
void run_fused(const SsdArgs& a, const Tensor& dy, const Dims& z, SsdGrads& g) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  const Tensor S = Tensor::empty({z.batch, z.H, z.nc, kP, kN}, DType::bf16, Device::cuda);
  const Tensor dS = Tensor::empty({z.batch, z.H, z.nc, kP, kN}, DType::bf16, Device::cuda);
  __nv_bfloat16* const S_ptr = S.data<__nv_bfloat16>();
  __nv_bfloat16* const dS_ptr = dS.data<__nv_bfloat16>();
  // f32 inputs: x and dy rounded to bf16 by kernel 1 for kernel 3's async copies.
  const Tensor x16 = kF32 ? Tensor::empty(a.x.shape(), DType::bf16, Device::cuda) : a.x;
  const Tensor dy16 = kF32 ? Tensor::empty(a.x.shape(), DType::bf16, Device::cuda) : dy;
  const Tensor decay = Tensor::empty({int64_t(z.batch) * z.H * z.nc}, DType::f32, Device::cuda);
  auto ptr = [](const Tensor& t) { return static_cast<const T*>(t.raw()); };
  __nv_bfloat16* const x16_ptr = kF32 ? x16.data<__nv_bfloat16>() : nullptr;
  __nv_bfloat16* const dy16_ptr = kF32 ? dy16.data<__nv_bfloat16>() : nullptr;
  cudaStream_t st = mamba::cuda::stream();
  const dim3 local_grid(static_cast<unsigned>((z.nc + kSuper - 1) / kSuper), static_cast<unsigned>(z.H),
                        static_cast<unsigned>(z.batch));
  chunk_local_state_kernel<false, T><<<local_grid, kThreads, 0, st>>>(z, ptr(a.x), ptr(a.B), a.dt.f32(),
                                                                      a.A.f32(), S_ptr, decay.f32(), x16_ptr);
  CUDA_CHECK_LAUNCH();
  chunk_local_state_kernel<true, T><<<local_grid, kThreads, 0, st>>>(
      z, ptr(dy), ptr(a.C), a.dt.f32(), a.A.f32(), dS_ptr, decay.f32(), dy16_ptr);
  CUDA_CHECK_LAUNCH();
  state_pass_kernel<kP * kN>
      <<<dim3((kP * kN / kPassVec + 255) / 256, static_cast<unsigned>(z.batch * z.H), 2), 256, 0, st>>>(
          z.nc, S_ptr, dS_ptr, decay.f32());
  CUDA_CHECK_LAUNCH();
  static const bool smem_opt_in = [] {  // once per process (current device) and input type
    CUDA_CHECK(cudaFuncSetAttribute(chunk_bwd_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(sizeof(BwdSmem))));
    return true;
  }();
  (void)smem_opt_in;
  FusedArgs<T> f{};
  f.B = ptr(a.B), f.C = ptr(a.C), f.dt = a.dt.f32(), f.A = a.A.f32(), f.D = a.D.f32();
  f.x = static_cast<const __nv_bfloat16*>(x16.raw()), f.dy = static_cast<const __nv_bfloat16*>(dy16.raw());
  f.S = S_ptr, f.dS = dS_ptr, f.decay = decay.f32();
  f.dx = g.dx.f32(), f.ddt = g.ddt.f32(), f.dA = g.dA.f32(), f.dB = g.dB.f32(), f.dC = g.dC.f32();
  f.dD = g.dD.f32();
  chunk_bwd_kernel<T>
      <<<dim3(static_cast<unsigned>(z.nc), static_cast<unsigned>(z.G), static_cast<unsigned>(z.batch)),
         kFusedThreads, sizeof(BwdSmem), st>>>(z, f);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

SsdGrads ssd_bwd_cuda_fast(const SsdArgs& a, const Tensor& dy_in) {
  SsdGrads g = ssd_bwd_cuda_outputs(a, dy_in);
  MAMBA_CHECK(ssd_bwd_fast_supported(a), "ssd_bwd (CUDA, fast): unsupported shape");
  const Tensor dy = dy_in.contiguous();
  MAMBA_CHECK(dy.shape() == a.x.shape() && dy.dtype() == a.x.dtype(),
              "ssd_bwd (CUDA, fast): dy must have x's shape and dtype");
  Dims z{};
  z.batch = static_cast<int>(a.x.size(0)), z.L = static_cast<int>(a.x.size(1));
  z.H = static_cast<int>(a.x.size(2)), z.G = static_cast<int>(a.B.size(2)), z.hpg = z.H / z.G;
  z.nc = (z.L + kQ - 1) / kQ;
  z.d_per_channel = a.D.numel() == int64_t(z.H) * kP;
  if (z.batch == 0 || z.L == 0) return g;
  if (a.x.dtype() == DType::bf16)
    run_fused<__nv_bfloat16>(a, dy, z, g);
  else
    run_fused<float>(a, dy, z, g);
  return g;
}

}  // namespace mamba::ops
