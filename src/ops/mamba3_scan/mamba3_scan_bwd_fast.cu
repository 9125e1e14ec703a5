// Backward of the Mamba-3 SISO scan on tensor cores (bf16 operands, fp32 accumulation) for
// head_dim 64, d_state 128: the chunked form of mamba3_scan_bwd_gemm.cu's header (same symbols:
// A_u, γ_u, b_u, M_ij = e^{A_i−A_j}(γ_j + [j<i]·b_{j+1}), m_j = M_Qj, Z_c, F_{c+1}) with 64-token
// chunks, the Q×Q terms (G = q·kᵀ, dy·vᵀ, W = M⊙G, dG = (dy·vᵀ)⊙M, dM) kept on chip. The structure
// of ssd_bwd_fast.cu, sharing its tile helpers (ssd_bwd_tiles.cuh):
//   1. m3_local_state_kernel: per (batch, head, superchunk of kSuper chunks) the chunks'
//      Σ_j m_j v_j k_jᵀ and dyᵀ·diag(e^A)·q summed into the superchunk's prefixes (the layout in
//      ssd_bwd_tiles.cuh), and each chunk's log2 decay A_Q;
//   2. state_pass_kernel: Z forward and F reverse at the superchunks' boundaries (bf16 in memory,
//      fp32 carry);
//   3. m3_chunk_bwd_kernel: per (batch, head, chunk): Z_c and F_{c+1} completed from the boundary
//      states, dx, dq, dk, dD and the scalar gradients dγ,
//      db and dadt (suffix sums of dA); q and k are per head, so a block is one head's chunk and two
//      blocks share an SM;
//   4. m3_token_kernel: ddt and dtrap per token from dγ and db (db of a chunk's first token comes
//      from the previous chunk's row Q, so a token's two terms come from two blocks).
// x, q, k and dy are fp32 tensors, rounded to bf16 as their tiles are copied to shared memory.
#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/ssd/ssd_bwd_tiles.cuh"
#include "ops/ssd/ssd_mma.cuh"

namespace mamba::ops {

// Checks the arguments and makes the gradients of one call (mamba3_scan_bwd_cuda.cu).
// bf16_inputs: x, q, k and dy are bf16 (the fused backward's; every other path takes f32).
Mamba3ScanGrads mamba3_scan_bwd_cuda_grads(const Mamba3ScanArgs& a, const Tensor& dy,
                                           bool bf16_inputs = false);

namespace {

using namespace cuda::chunk_bwd;
using cuda::pack_bf16;

constexpr int kWarps = 4;  // warp w: chunk rows [16w, 16w+16), or state rows (head_dim) [16w, 16w+16)
constexpr int kThreads = 32 * kWarps;

struct Dims {
  int batch, L, H, nc;
};

__device__ __forceinline__ int64_t state_offset(const Dims& z, int b, int h, int c) {
  return ((int64_t(b) * z.H + h) * z.nc + c) * (kP * kN);
}

// The chunk's scalars (tokens t0 + u, u = 0..kQ; zero past seq_len), in shared memory.
struct ChunkCoefs {
  float a2[kQ + 1];  // A_u in log2 units: Σ_{u'=1..u} adt (A_0 = 0; A_Q takes the next chunk's first token)
  float gam[kQ];     // γ_u = λ·dt
  float bq[kQ + 1];  // b_u = (1 − λ)·dt
  float m[kQ];       // m_j = e^{A_Q − A_j}·(γ_j + b_{j+1})
};

// Warp 0 (lane l: u = 2l, 2l+1; lane 31 also u = kQ). at: (b, t0, h) index of adt/dt/trap.
__device__ void chunk_coefs(const Dims& z, const float* adt, const float* dt, const float* trap, int64_t at,
                            int t0, ChunkCoefs& s) {
  const int lane = threadIdx.x & 31;
  float l2[3] = {}, lam[3] = {}, d[3] = {};
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    const int u = 2 * lane + i;
    if (t0 + u >= z.L || (i == 2 && lane != 31)) continue;
    const int64_t o = at + int64_t(u) * z.H;
    l2[i] = u >= 1 ? adt[o] * kLog2e : 0.0f;
    lam[i] = trap[o], d[i] = dt[o];
  }
  float run = l2[0] + l2[1];
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float up = __shfl_up_sync(0xffffffffu, run, off);
    if (lane >= off) run += up;
  }
  s.a2[2 * lane] = run - l2[1], s.a2[2 * lane + 1] = run;
  const float a_q = __shfl_sync(0xffffffffu, run + l2[2], 31);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    s.gam[2 * lane + i] = lam[i] * d[i];
    s.bq[2 * lane + i] = (1.0f - lam[i]) * d[i];
  }
  if (lane == 31) s.a2[kQ] = a_q, s.bq[kQ] = (1.0f - lam[2]) * d[2];
  __syncwarp();
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int j = 2 * lane + i;
    s.m[j] = exp2f(fminf(a_q - s.a2[j], 0.0f)) * (s.gam[j] + s.bq[j + 1]);
  }
  __syncwarp();
}

// ---- 1: forward Σ_j m_j x_jᵀ k_j (and the decay A_Q), reverse Σ_i e^{A_i} dy_iᵀ q_i ----
struct LocalSmem {
  __nv_bfloat16 v[kQ * kLdP];  // [token, head_dim]
  __nv_bfloat16 k[kQ * kLdN];  // [token, d_state]
  ChunkCoefs cf;
  float wt[kQ];
};

// T: the type of x, q, k and dy (float, or __nv_bfloat16 taken as they are).
template <bool kReverse, class T>  // 3 blocks an SM: the fp32 prefix stays live across the tile loads
__global__ void __launch_bounds__(kThreads, 3)
    m3_local_state_kernel(Dims z, const T* v, const T* key, const float* adt, const float* dt,
                          const float* trap, __nv_bfloat16* out, float* decay) {
  __shared__ LocalSmem s;
  const int h = blockIdx.y, b = blockIdx.z;
  const int first = blockIdx.x * kSuper, last = min(first + kSuper, z.nc) - 1;
  // The superchunk's prefix (ssd_bwd_tiles.cuh): chunk by chunk, forward from first or back from last.
  float acc[kN / 8][4] = {};
  for (int step = 0; step <= last - first; ++step) {
    const int c = kReverse ? last - step : first + step, t0 = c * kQ, valid = min(kQ, z.L - t0);
    const int64_t tok = (int64_t(b) * z.L + t0) * z.H + h;
    if (step > 0) __syncthreads();  // the previous chunk's tiles are no longer read
    load_tile<kQ, kP, kLdP, kThreads>(s.v, v + tok * kP, int64_t(z.H) * kP, valid);
    load_tile<kQ, kN, kLdN, kThreads>(s.k, key + tok * kN, int64_t(z.H) * kN, valid);
    if (threadIdx.x < 32) {
      chunk_coefs(z, adt, dt, trap, tok, t0, s.cf);
      for (int t = threadIdx.x; t < kQ; t += 32) s.wt[t] = kReverse ? exp2f(s.cf.a2[t]) : s.cf.m[t];
      if (!kReverse && threadIdx.x == 0) decay[(int64_t(b) * z.H + h) * z.nc + c] = s.cf.a2[kQ];
    }
    __syncthreads();
    if (step > 0) store_state_bf16(out + state_offset(z, b, h, c), acc);
    const float decay_c = exp2f(s.cf.a2[kQ]);  // the chunk's decay
#pragma unroll
    for (int nt = 0; nt < kN / 8; ++nt)
      acc[nt][0] *= decay_c, acc[nt][1] *= decay_c, acc[nt][2] *= decay_c, acc[nt][3] *= decay_c;
    accumulate_state(acc, s.v, s.k, s.wt);
  }
  store_state_bf16(out + state_offset(z, b, h, kReverse ? last : first), acc);
}

// ---- 3: the fused per-chunk backward ----
struct BwdSmem {
  __nv_bfloat16 q[kQ * kLdN], k[kQ * kLdN];   // [token, d_state]
  __nv_bfloat16 x[kQ * kLdP], dy[kQ * kLdP];  // [token, head_dim]
  __nv_bfloat16 z[kP * kLdN], f[kP * kLdN];   // Z_c and F_{c+1} [head_dim, d_state]
  __nv_bfloat16 w[kQ * kLdQ], dg[kQ * kLdQ];  // W = M⊙G and dG = (dy·vᵀ)⊙M [token i, token j], i ≥ j
  ChunkCoefs cf;
  // Column sums per warp of dM⊙M and of dM⊙e^{A_i−A_j}; the diagonal of the latter; per row: the dA
  // terms, dM_Qj·m_j, dM_Qj·e^{A_Q−A_j}.
  float col_t[kWarps][kQ], col_c[kWarps][kQ], diag[kQ], part[kQ], tq[kQ], dcq[kQ], red[32];
};

template <class T>
struct FusedArgs {
  const T *x, *q, *k, *dy;
  const float *adt, *dt, *trap, *D;
  // Z and F: the superchunk prefixes and boundary states [batch, n_heads, n_chunks, head_dim, d_state].
  const __nv_bfloat16 *Z, *F;
  const float* decay;                           // the chunks' log2 decays A_Q [batch, n_heads, n_chunks]
  float *dx, *dq, *dk, *dadt, *dgam, *db, *dD;  // dgam, db: the ddt and dtrap buffers until kernel 4
};

template <class T>
__global__ void __launch_bounds__(kThreads, 2) m3_chunk_bwd_kernel(Dims z, FusedArgs<T> f) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  BwdSmem& s = *reinterpret_cast<BwdSmem*>(smem_raw);
  const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, t0 = c * kQ, valid = min(kQ, z.L - t0);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, qd = lane & 3;
  const int r0 = warp * 16, i_lo = r0 + gq, i_hi = i_lo + 8;
  const int64_t tok = (int64_t(b) * z.L + t0) * z.H + h;  // (b, t0, h) row of every per-token tensor
  const int64_t rs_p = int64_t(z.H) * kP, rs_n = int64_t(z.H) * kN;
  {  // states by cp.async while the tiles are loaded
    const __nv_bfloat16 *zs = f.Z + state_offset(z, b, h, c), *fs = f.F + state_offset(z, b, h, c);
    constexpr int kVec = kN / 8;
#pragma unroll
    for (int j = 0; j < kP * kVec / kThreads; ++j) {
      const int i = threadIdx.x + j * kThreads, r = i / kVec, col = (i % kVec) * 8;
      cuda::cp_async16(&s.z[r * kLdN + col], zs + r * kN + col, true);
      cuda::cp_async16(&s.f[r * kLdN + col], fs + r * kN + col, true);
    }
    cuda::cp_async_commit();
  }
  load_tile<kQ, kN, kLdN, kThreads>(s.q, f.q + tok * kN, rs_n, valid);
  load_tile<kQ, kN, kLdN, kThreads>(s.k, f.k + tok * kN, rs_n, valid);
  load_tile<kQ, kP, kLdP, kThreads>(s.x, f.x + tok * kP, rs_p, valid);
  load_tile<kQ, kP, kLdP, kThreads>(s.dy, f.dy + tok * kP, rs_p, valid);
  const int first = super_first(c), last = super_last(c, z.nc);
  BoundaryStates<kThreads> bound;  // (L2: the superchunk's chunks' blocks run together)
  load_boundary_states(bound, c > first ? f.Z + state_offset(z, b, h, first) : nullptr,
                       c < last ? f.F + state_offset(z, b, h, last) : nullptr);
  if (warp == 0) chunk_coefs(z, f.adt, f.dt, f.trap, tok, t0, s.cf);
  for (int i = threadIdx.x; i < kWarps * kQ; i += kThreads) (&s.col_t[0][0])[i] = (&s.col_c[0][0])[i] = 0.0f;
  cuda::cp_async_wait<0>();
  __syncthreads();
  // ddec = e^{A_Q}·⟨F_{c+1}, Z_c⟩: the gradient through the chunk decay (block_sum's barriers
  // publish the completed states).
  const float2 de = super_decays(f.decay + (int64_t(b) * z.H + h) * z.nc, c, z.nc);
  const float zf = complete_states<kThreads>(s.z, s.f, bound, de.x, de.y);
  const float a_q = s.cf.a2[kQ], ddec = exp2f(a_q) * mamba::cuda::block_sum(zf, s.red);

  const float a_lo = s.cf.a2[i_lo], a_hi = s.cf.a2[i_hi];
  const float e_lo = exp2f(a_lo), e_hi = exp2f(a_hi), m_lo = s.cf.m[i_lo], m_hi = s.cf.m[i_hi];
  const int causal = (2 << warp) - 1;  // the 16-column tiles j ≤ i of the warp's rows
  // G = q·kᵀ, dy·vᵀ → W, dG (shared memory), the row sums of T = dM⊙M, column sums of T and of
  // dM⊙e^{A_i−A_j}, with dM = (dy·vᵀ)⊙G.
  float row_lo = 0.0f, row_hi = 0.0f;
  {
    float g[8][4] = {}, dyv[8][4] = {};
    mma_rows_nk<kN>(g, &s.q[r0 * kLdN], kLdN, s.k, kLdN, causal);
    mma_rows_nk<kP>(dyv, &s.dy[r0 * kLdP], kLdP, s.x, kLdP, causal);
#pragma unroll
    for (int st = 0; st < 4; ++st) {
      if (st > warp) continue;
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int nt = 2 * st + hf, j0 = st * 16 + hf * 8 + 2 * qd;
        float wv[4], dgv[4], ct[2], cc[2];  // wv, dgv: C-fragment order (row lo: 0, 1; hi: 2, 3)
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {
          const int j = j0 + jj;
          const float a_j = s.cf.a2[j], gam = s.cf.gam[j], bn = s.cf.bq[j + 1];
          // Selects, not products: exp2 of a positive difference (j > i) may overflow.
          const float el = j <= i_lo ? exp2f(fminf(a_lo - a_j, 0.0f)) : 0.0f;
          const float eh = j <= i_hi ? exp2f(fminf(a_hi - a_j, 0.0f)) : 0.0f;
          const float ml = el * (gam + (j < i_lo ? bn : 0.0f)), mh = eh * (gam + (j < i_hi ? bn : 0.0f));
          const float gl = g[nt][jj], gh = g[nt][2 + jj], yl = dyv[nt][jj], yh = dyv[nt][2 + jj];
          wv[jj] = ml * gl, wv[2 + jj] = mh * gh;
          dgv[jj] = yl * ml, dgv[2 + jj] = yh * mh;
          const float dml = yl * gl, dmh = yh * gh;  // dM
          row_lo += dml * ml, row_hi += dmh * mh;
          ct[jj] = dml * ml + dmh * mh;
          const float cl = dml * el, ch = dmh * eh;
          cc[jj] = cl + ch;
          if (j == i_lo) s.diag[j] = cl;
          if (j == i_hi) s.diag[j] = ch;
        }
        *reinterpret_cast<uint32_t*>(&s.w[i_lo * kLdQ + j0]) = pack_bf16(wv[0], wv[1]);
        *reinterpret_cast<uint32_t*>(&s.w[i_hi * kLdQ + j0]) = pack_bf16(wv[2], wv[3]);
        *reinterpret_cast<uint32_t*>(&s.dg[i_lo * kLdQ + j0]) = pack_bf16(dgv[0], dgv[1]);
        *reinterpret_cast<uint32_t*>(&s.dg[i_hi * kLdQ + j0]) = pack_bf16(dgv[2], dgv[3]);
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {
          const float vt = column_sum(ct[jj]), vc = column_sum(cc[jj]);
          if (gq == 0) s.col_t[warp][j0 + jj] = vt, s.col_c[warp][j0 + jj] = vc;
        }
      }
    }
  }
  row_lo = quad_sum(row_lo), row_hi = quad_sum(row_hi);
  __syncthreads();  // W, dG complete

  // dst[(b, t0 + row, h), n0 + col] = acc for the warp's rows below seq_len (fp32, row stride rs).
  auto store_rows = [&](float* dst, const float(&acc)[8][4], int64_t rs, int n0) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const int col = n0 + nt * 8 + 2 * qd;
      if (i_lo < valid)
        *reinterpret_cast<float2*>(dst + i_lo * rs + col) = make_float2(acc[nt][0], acc[nt][1]);
      if (i_hi < valid)
        *reinterpret_cast<float2*>(dst + i_hi * rs + col) = make_float2(acc[nt][2], acc[nt][3]);
    }
  };
  // dq = dG·k + diag(e^A)·Y with Y = dy·Z (the warp's rows i; Y 32 columns at a time, e on its fp32
  // values), and rowdot_i = e^{A_i}·Σ_n q∘Y (= e^{A_i}·Σ_p dy·(q·Zᵀ), without a product of its own).
  float rd_lo = 0.0f, rd_hi = 0.0f;
#pragma unroll
  for (int n0 = 0; n0 < kN; n0 += 64) {
    float acc[8][4] = {};
#pragma unroll
    for (int st = 0; st < 4; ++st) {  // dG [i, j]·k [j, n] over the tiles j ≤ i (the rest is zero)
      if (st <= warp)
        mma_rows_kn<16, false>(acc, &s.dg[r0 * kLdQ + st * 16], kLdQ, &s.k[st * 16 * kLdN], kLdN, n0);
    }
#pragma unroll
    for (int part = 0; part < 2; ++part) {
      float y[4][4] = {};
      mma_rows_kn<kP, false, 2>(y, &s.dy[r0 * kLdP], kLdP, s.z, kLdN, n0 + 32 * part);
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int n = n0 + 32 * part + nt * 8 + 2 * qd;
        const float2 q_lo =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.q[i_lo * kLdN + n]));
        const float2 q_hi =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.q[i_hi * kLdN + n]));
        rd_lo += q_lo.x * y[nt][0] + q_lo.y * y[nt][1], rd_hi += q_hi.x * y[nt][2] + q_hi.y * y[nt][3];
        float(&d)[4] = acc[4 * part + nt];
        d[0] += e_lo * y[nt][0], d[1] += e_lo * y[nt][1], d[2] += e_hi * y[nt][2], d[3] += e_hi * y[nt][3];
      }
    }
    store_rows(f.dq + tok * kN, acc, rs_n, n0);
  }
  rd_lo = e_lo * quad_sum(rd_lo), rd_hi = e_hi * quad_sum(rd_hi);
  // KF = k·Fᵀ; dM_Qj = v_j·KF_j; dx = Wᵀ·dy + m⊙KF + D·dy (the warp's rows j); dD.
  float dmq_lo = 0.0f, dmq_hi = 0.0f;
  {
    float kf[8][4] = {};
    mma_rows_nk<kN>(kf, &s.k[r0 * kLdN], kLdN, s.f, kLdN, 0xF);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const int p = nt * 8 + 2 * qd;
      const float2 x_lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.x[i_lo * kLdP + p]));
      const float2 x_hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.x[i_hi * kLdP + p]));
      dmq_lo += x_lo.x * kf[nt][0] + x_lo.y * kf[nt][1];
      dmq_hi += x_hi.x * kf[nt][2] + x_hi.y * kf[nt][3];
      kf[nt][0] *= m_lo, kf[nt][1] *= m_lo, kf[nt][2] *= m_hi, kf[nt][3] *= m_hi;
    }
    dmq_lo = quad_sum(dmq_lo), dmq_hi = quad_sum(dmq_hi);
    mma_causal_tn<4, 0>(kf, s.w, s.dy, kLdP, 0, warp);  // kf is now Wᵀ·dy + m⊙KF
    const float D = f.D[h];
    float dd = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const int p = nt * 8 + 2 * qd;
#pragma unroll
      for (int hi = 0; hi < 2; ++hi) {
        const int i = hi ? i_hi : i_lo;
        const float2 xv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.x[i * kLdP + p]));
        const float2 dyv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&s.dy[i * kLdP + p]));
        kf[nt][2 * hi] += D * dyv.x, kf[nt][2 * hi + 1] += D * dyv.y;
        dd += dyv.x * xv.x + dyv.y * xv.y;  // zero past seq_len
      }
    }
    store_rows(f.dx + tok * kP, kf, rs_p, 0);
    dd = mamba::cuda::warp_sum(dd);
    if (lane == 0) atomicAdd(&f.dD[h], dd);
  }
  // dk = dGᵀ·q + diag(m)·v·F (the warp's rows j).
#pragma unroll
  for (int n0 = 0; n0 < kN; n0 += 64) {
    float acc[8][4] = {};
    mma_causal_tn<4, 0>(acc, s.dg, s.q, kLdN, n0, warp);
#pragma unroll
    for (int part = 0; part < 2; ++part) {  // m on the fp32 v·F (a bf16 m∘v would round once more)
      float y[4][4] = {};
      mma_rows_kn<kP, false, 2>(y, &s.x[r0 * kLdP], kLdP, s.f, kLdN, n0 + 32 * part);
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        float(&d)[4] = acc[4 * part + nt];
        d[0] += m_lo * y[nt][0], d[1] += m_lo * y[nt][1], d[2] += m_hi * y[nt][2], d[3] += m_hi * y[nt][3];
      }
    }
    store_rows(f.dk + tok * kN, acc, rs_n, n0);
  }
  if (qd == 0) {
    const float tq_lo = dmq_lo * m_lo, tq_hi = dmq_hi * m_hi;
    s.part[i_lo] = row_lo - tq_lo + rd_lo, s.part[i_hi] = row_hi - tq_hi + rd_hi;
    s.tq[i_lo] = tq_lo, s.tq[i_hi] = tq_hi;
    s.dcq[i_lo] = dmq_lo * exp2f(fminf(a_q - a_lo, 0.0f)),
    s.dcq[i_hi] = dmq_hi * exp2f(fminf(a_q - a_hi, 0.0f));
  }
  __syncthreads();

  // dA_u, its suffix sums dadt; dγ_u and db_{u+1} (warp 0, lane l: u = 2l, 2l+1).
  if (warp == 0) {
    float dA[2], tq_sum = 0.0f;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int u = 2 * lane + k;
      float ct = 0.0f, cc = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) ct += s.col_t[w][u], cc += s.col_c[w][u];
      dA[k] = s.part[u] - ct;
      tq_sum += s.tq[u];
      const float dgam = cc + s.dcq[u], db_next = cc - s.diag[u] + s.dcq[u];
      if (u < valid) f.dgam[tok + int64_t(u) * z.H] = dgam;
      if (u + 1 < z.L - t0) f.db[tok + int64_t(u + 1) * z.H] = db_next;  // token t0 + u + 1
    }
    const float dA_q = ddec + mamba::cuda::warp_sum(tq_sum);
    float run = dA[0] + dA[1];  // suffix sum over lanes ≥ this one
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const float down = __shfl_down_sync(0xffffffffu, run, off);
      if (lane + off < 32) run += down;
    }
    const float dadl[2] = {dA_q + run, dA_q + run - dA[0]};  // u = 2l, 2l + 1
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int u = 2 * lane + k;
      // u = 0 is the previous chunk's row Q (written there); the first token of all has none.
      if (u >= 1 && u < valid) f.dadt[tok + int64_t(u) * z.H] = dadl[k];
    }
    if (lane == 0 && c == 0) f.dadt[tok] = 0.0f, f.db[tok] = 0.0f;
    if (lane == 0 && kQ < z.L - t0) f.dadt[tok + int64_t(kQ) * z.H] = dA_q;  // the next chunk's first token
  }
}

// ---- 4: ddt = dγ·λ + db·(1 − λ), dtrap = (dγ − db)·dt, in place of dγ and db ----
__global__ void m3_token_kernel(int64_t n, const float* dt, const float* trap, float* ddt, float* dtrap) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n;
       o += int64_t(gridDim.x) * blockDim.x) {
    const float dg = ddt[o], db = dtrap[o], lam = trap[o];
    ddt[o] = dg * lam + db * (1.0f - lam);
    dtrap[o] = (dg - db) * dt[o];
  }
}

}  // namespace

bool mamba3_scan_bwd_fast_supported(const Mamba3ScanArgs& a) {
  if (a.mimo_x.defined() || a.x.dim() != 4 || a.q.dim() != 5 || a.q.size(2) != 1) return false;
  const int64_t batch = a.x.size(0), L = a.x.size(1), H = a.x.size(2);
  if (a.x.size(3) != kP || a.q.size(4) != kN || a.k.shape() != a.q.shape()) return false;
  // x, q, k: all f32 or all bf16 (taken as they are); adt, dt, trap, D f32.
  const DType in = a.x.dtype();
  if (!(in == DType::f32 || in == DType::bf16) || a.q.dtype() != in || a.k.dtype() != in) return false;
  for (const Tensor* t : {&a.adt, &a.dt, &a.trap, &a.D})
    if (t->dtype() != DType::f32) return false;
  for (const Tensor* t : {&a.x, &a.q, &a.k, &a.adt, &a.dt, &a.trap, &a.D})
    if (!t->is_contiguous()) return false;
  // Grid limits (y: heads, z: batch; batch·heads: the state pass) and 32-bit token indices.
  return batch <= 65535 && H <= 65535 && batch * H <= 65535 && L < (int64_t(1) << 30);
}

namespace {

// The five launches for x, q, k, dy of type T (float, or __nv_bfloat16 taken as they are).
template <class T>
void run_fused(const Mamba3ScanArgs& a, const Tensor& dy, const Dims& z, Mamba3ScanGrads& g) {
  const Tensor Zs = Tensor::empty({z.batch, z.H, z.nc, kP, kN}, DType::bf16, Device::cuda);
  const Tensor Fs = Tensor::empty({z.batch, z.H, z.nc, kP, kN}, DType::bf16, Device::cuda);
  const Tensor decay = Tensor::empty({int64_t(z.batch) * z.H * z.nc}, DType::f32, Device::cuda);
  __nv_bfloat16* const Z_ptr = Zs.data<__nv_bfloat16>();
  __nv_bfloat16* const F_ptr = Fs.data<__nv_bfloat16>();
  auto ptr = [](const Tensor& t) { return static_cast<const T*>(t.raw()); };
  cudaStream_t st = mamba::cuda::stream();
  const dim3 chunk_grid(static_cast<unsigned>(z.nc), static_cast<unsigned>(z.H),
                        static_cast<unsigned>(z.batch));
  const dim3 super_grid(static_cast<unsigned>((z.nc + kSuper - 1) / kSuper), static_cast<unsigned>(z.H),
                        static_cast<unsigned>(z.batch));
  m3_local_state_kernel<false, T><<<super_grid, kThreads, 0, st>>>(
      z, ptr(a.x), ptr(a.k), a.adt.f32(), a.dt.f32(), a.trap.f32(), Z_ptr, decay.f32());
  CUDA_CHECK_LAUNCH();
  m3_local_state_kernel<true, T><<<super_grid, kThreads, 0, st>>>(
      z, ptr(dy), ptr(a.q), a.adt.f32(), a.dt.f32(), a.trap.f32(), F_ptr, decay.f32());
  CUDA_CHECK_LAUNCH();
  state_pass_kernel<kP * kN>
      <<<dim3((kP * kN / kPassVec + 255) / 256, static_cast<unsigned>(z.batch * z.H), 2), 256, 0, st>>>(
          z.nc, Z_ptr, F_ptr, decay.f32());
  CUDA_CHECK_LAUNCH();
  static const bool smem_opt_in = [] {  // once per process (current device) and input type
    CUDA_CHECK(cudaFuncSetAttribute(m3_chunk_bwd_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(sizeof(BwdSmem))));
    return true;
  }();
  (void)smem_opt_in;
  FusedArgs<T> f{};
  f.x = ptr(a.x), f.q = ptr(a.q), f.k = ptr(a.k), f.dy = ptr(dy);
  f.adt = a.adt.f32(), f.dt = a.dt.f32(), f.trap = a.trap.f32(), f.D = a.D.f32();
  f.Z = Z_ptr, f.F = F_ptr, f.decay = decay.f32();
  f.dx = g.dx.f32(), f.dq = g.dq.f32(), f.dk = g.dk.f32(), f.dadt = g.dadt.f32();
  f.dgam = g.ddt.f32(), f.db = g.dtrap.f32(), f.dD = g.dD.f32();
  m3_chunk_bwd_kernel<T><<<chunk_grid, kThreads, sizeof(BwdSmem), st>>>(z, f);
  CUDA_CHECK_LAUNCH();
  const int64_t n = int64_t(z.batch) * z.L * z.H;
  m3_token_kernel<<<mamba::cuda::grid_for(n), 256, 0, st>>>(n, a.dt.f32(), a.trap.f32(), g.ddt.f32(),
                                                            g.dtrap.f32());
  CUDA_CHECK_LAUNCH();
}

}  // namespace

Mamba3ScanGrads mamba3_scan_bwd_cuda_fast(const Mamba3ScanArgs& a, const Tensor& dy_in) {
  MAMBA_CHECK(mamba3_scan_bwd_fast_supported(a), "mamba3_scan_bwd (CUDA, fast): unsupported shape");
  const Tensor dy = dy_in.contiguous();
  // bf16 x, q, k and dy (all four) are taken as they are; the grads are f32 either way.
  Mamba3ScanGrads g = mamba3_scan_bwd_cuda_grads(a, dy, /*bf16_inputs=*/a.x.dtype() == DType::bf16);
  Dims z{};
  z.batch = static_cast<int>(a.x.size(0)), z.L = static_cast<int>(a.x.size(1));
  z.H = static_cast<int>(a.x.size(2)), z.nc = (z.L + kQ - 1) / kQ;
  if (int64_t(z.batch) * z.L * z.H == 0) return g;
  if (a.x.dtype() == DType::bf16)
    run_fused<__nv_bfloat16>(a, dy, z, g);
  else
    run_fused<float>(a, dy, z, g);
  return g;
}

}  // namespace mamba::ops
