// Backward of the Mamba-3 SISO scan on CUDA in the chunked matrix form: the same gradients as
// mamba3_scan_bwd_cuda_exact (fp32), with almost all the work in cuBLAS strided-batched GEMMs (f32
// operands, f32 compute, no TF32) over (batch, head, chunk).
//
// Within a chunk of Q tokens (local i, j; A_i = Σ_{u=1..i} adt_{t0+u}, A_0 = 0; b_t = (1−λ_t)·dt_t,
// so β_t = b_t·α_t) the recurrence unrolls to
//   S_i = e^{A_i}·Z + Σ_{j≤i} M_ij v_j k_jᵀ,   M_ij = e^{A_i−A_j}·(γ_j + [j<i]·b_{j+1})
// where Z = α_{t0}·S_{t0−1} + β_{t0}·v_{t0−1}k_{t0−1}ᵀ is the state entering the chunk with the
// pending β term of the previous chunk's last token folded in (so it needs no k_prev/v_prev and no
// division by α). Z of the next chunk is the same formula at the row i = Q (token t0+Q, its γ left
// out): Z_{c+1} = e^{A_Q}·Z_c + Σ_j m_j v_j k_jᵀ, m_j = M_Qj. So per chunk, with G = q kᵀ and
// W = M ⊙ G, y_i = e^{A_i}·Z q_i + Σ_j W_ij v_j + D v_i (SSD with a per-pair mask), and
//   dv = Wᵀ dy + diag(m)·k F_{c+1}ᵀ,        dG = (dy vᵀ) ⊙ M,
//   dq = dG k + diag(e^A) dy Z,              dk = dGᵀ q + diag(m) v F_{c+1},
//   F_c = dyᵀ diag(e^A) q + e^{A_Q} F_{c+1}  (the gradient of Z_c, reverse over chunks),
//   dM_ij = (dy_i·v_j)·G_ij,  dM_Qj = v_jᵀ F_{c+1} k_j,
// and the scalar gradients come from dM: dγ_j = Σ_{i≥j} dM_ij e^{A_i−A_j}, db_{j+1} = the same over
// i > j (row Q included), dA_i = Σ_j dM_ij M_ij − Σ_{i'} dM_i'i M_i'i (+ the e^{A_i} Z q_i term and
// the e^{A_Q} decay of Z), dadt_{t0+u} = Σ_{i≥u} dA_i (u ≥ 1; u = 0 gets the previous chunk's
// dA_Q). Row Q of chunk c holds token t0+Q of chunk c+1, whose b and adt gradients that chunk
// picks up.
// Launches: pack (scalars, chunk-padded copies of q, k, v, dy, m⊙v, e^A⊙dy), 2 GEMMs, mask,
// 4 GEMMs, the chunk scan of Z and F, 1 GEMM, dots, 3 GEMMs, finish per chunk, per token, dD per
// (head, slice of chunks) (+ a finish over the slices when there are several).
#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

// Checks the arguments and makes the gradients of one call (mamba3_scan_bwd_cuda.cu; both backward
// paths fill them).
Mamba3ScanGrads mamba3_scan_bwd_cuda_grads(const Mamba3ScanArgs& a, const Tensor& dy,
                                           bool bf16_inputs = false);

namespace {

constexpr int kMaxQ = 64;  // the mask kernel keeps two Q×Q tiles in shared memory
constexpr int kThreads = 256;

struct Dims {
  int64_t B, L, H, P, N, Q, nc, C;  // C = B·H·nc chunks, chunk index ci = (b·H + h)·nc + c
};

// Per-chunk scalars and chunk-padded operands (row u of chunk ci is token c·Q + u; zero past L).
struct Work {
  float *qp, *kp;                  // [C, Q, N]
  float *vp, *dyp, *vm, *dye;      // [C, Q, P]: v, dy, m_u·v_u, e^{A_u}·dy_u
  float *A, *gam, *bq, *mq, *dec;  // [C, Q+1] A_u; [C, Q] γ_u; [C, Q+1] b_u; [C, Q] m_u; [C] e^{A_Q}
  float *G, *dW;                   // [C, Q, Q]: q kᵀ then M⊙(q kᵀ); dy vᵀ then M⊙(dy vᵀ)
  float *dv, *KF;                  // [C, Q, P]: Wᵀ dy; k F_{c+1}ᵀ
  float *dq, *dk;                  // [C, Q, N]
  float *Z, *F;                    // [C, P, N]: local Z contribution, then Z_c; dZ local, then F_{c+1}
  float *sg, *sb, *sA;             // mask partials: [C, Q] dγ; [C, Q+1] db; [C, Q+1] dA
  float *rowdot, *ddec;            // [C, Q] q_i·(e^{A_i} Zᵀ dy_i); [C] e^{A_Q}·⟨F_{c+1}, Z_c⟩
  float *dgam, *dbl, *dadl;        // per chunk: [C, Q] dγ; [C, Q+1] db; [C, Q+1] dadt suffix sums
  double* dD_part;                 // [C]
};

__device__ __forceinline__ int64_t chunk_b(const Dims& d, int64_t ci) {
  return ci / d.nc / d.H;
}
__device__ __forceinline__ int64_t chunk_h(const Dims& d, int64_t ci) {
  return (ci / d.nc) % d.H;
}

// Scalars of the chunk, then its padded operands. One block per chunk.
__global__ void pack_kernel(Dims d, Work w, const float* __restrict__ x, const float* __restrict__ q,
                            const float* __restrict__ k, const float* __restrict__ adt,
                            const float* __restrict__ dt, const float* __restrict__ trap,
                            const float* __restrict__ dy) {
  __shared__ float s_adt[kMaxQ + 1], s_A[kMaxQ + 1], s_m[kMaxQ], s_b[kMaxQ + 1], s_g[kMaxQ];
  const int64_t ci = blockIdx.x, b = chunk_b(d, ci), h = chunk_h(d, ci), t0 = (ci % d.nc) * d.Q;
  const int64_t Q = d.Q, Q1 = Q + 1, N = d.N, P = d.P;
  for (int64_t u = threadIdx.x; u <= Q; u += blockDim.x) {
    const int64_t t = t0 + u, o = (b * d.L + t) * d.H + h;
    const bool ok = t < d.L;
    const float dtv = ok ? dt[o] : 0.0f, lam = ok ? trap[o] : 0.0f;
    s_adt[u] = ok ? adt[o] : 0.0f;
    s_b[u] = (1.0f - lam) * dtv;
    if (u < Q) s_g[u] = lam * dtv;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float A = 0.0f;
    s_A[0] = 0.0f;
    for (int64_t u = 1; u <= Q; ++u) s_A[u] = A += s_adt[u];
  }
  __syncthreads();
  for (int64_t u = threadIdx.x; u <= Q; u += blockDim.x) {
    w.A[ci * Q1 + u] = s_A[u];
    w.bq[ci * Q1 + u] = s_b[u];
    if (u < Q) {
      const float m = expf(s_A[Q] - s_A[u]) * (s_g[u] + s_b[u + 1]);
      s_m[u] = m;
      w.mq[ci * Q + u] = m;
      w.gam[ci * Q + u] = s_g[u];
    } else {
      w.dec[ci] = expf(s_A[Q]);
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < Q * N; i += blockDim.x) {
    const int64_t u = i / N, n = i % N, t = t0 + u;
    const int64_t src = ((b * d.L + t) * d.H + h) * N + n;
    w.qp[ci * Q * N + i] = t < d.L ? q[src] : 0.0f;
    w.kp[ci * Q * N + i] = t < d.L ? k[src] : 0.0f;
  }
  for (int64_t i = threadIdx.x; i < Q * P; i += blockDim.x) {
    const int64_t u = i / P, p = i % P, t = t0 + u;
    const int64_t src = ((b * d.L + t) * d.H + h) * P + p;
    const float v = t < d.L ? x[src] : 0.0f, g = t < d.L ? dy[src] : 0.0f;
    w.vp[ci * Q * P + i] = v;
    w.dyp[ci * Q * P + i] = g;
    w.vm[ci * Q * P + i] = s_m[u] * v;
    w.dye[ci * Q * P + i] = expf(s_A[u]) * g;
  }
}

// G ← M⊙G (= W), dW ← M⊙dW (= dG), and the partial scalar gradients from dM_ij = dW_ij·G_ij over
// the chunk's own rows: dγ_j (column sums of dM⊙e^{A_i−A_j}), db_{j+1} (the same below the
// diagonal), dA_i (row sums minus column sums of dM⊙M). One block per chunk.
__global__ void mask_kernel(Dims d, Work w) {
  __shared__ float T[kMaxQ][kMaxQ + 1], dc[kMaxQ][kMaxQ + 1];
  __shared__ float s_A[kMaxQ + 1], s_g[kMaxQ], s_b[kMaxQ + 1];
  const int64_t ci = blockIdx.x, Q = d.Q, Q1 = Q + 1;
  for (int64_t u = threadIdx.x; u <= Q; u += blockDim.x) {
    s_A[u] = w.A[ci * Q1 + u];
    s_b[u] = w.bq[ci * Q1 + u];
    if (u < Q) s_g[u] = w.gam[ci * Q + u];
  }
  __syncthreads();
  float* G = w.G + ci * Q * Q;
  float* dW = w.dW + ci * Q * Q;
  for (int64_t idx = threadIdx.x; idx < Q * Q; idx += blockDim.x) {
    const int64_t i = idx / Q, j = idx % Q;
    float M = 0.0f, e = 0.0f;
    if (j <= i) {
      e = expf(s_A[i] - s_A[j]);
      M = e * (s_g[j] + (j < i ? s_b[j + 1] : 0.0f));
    }
    const float g = G[idx], dw = dW[idx], dm = dw * g;
    G[idx] = M * g;
    dW[idx] = M * dw;
    T[i][j] = dm * M;
    dc[i][j] = dm * e;
  }
  __syncthreads();
  if (threadIdx.x < Q) {
    const int64_t j = threadIdx.x;
    float row = 0.0f, col = 0.0f, below = 0.0f;  // below: Σ_{i>j} dc_ij
    for (int64_t u = 0; u <= j; ++u) row += T[j][u];
    for (int64_t i = j; i < Q; ++i) col += T[i][j];
    for (int64_t i = j + 1; i < Q; ++i) below += dc[i][j];
    w.sA[ci * Q1 + j] = row - col;
    w.sg[ci * Q + j] = below + dc[j][j];
    w.sb[ci * Q1 + j + 1] = below;
  } else if (threadIdx.x == Q) {
    w.sA[ci * Q1 + Q] = 0.0f;
    w.sb[ci * Q1] = 0.0f;
  }
}

// Z: local contributions → entry states Z_c (Z_0 = 0); F: local dZ → F_{c+1} (F_{nc} = 0). One
// thread per (batch, head, state entry), sequential over chunks; the loads of kUnroll chunks are
// issued before their stores so that long sequences (512 chunks) do not wait on each in turn.
constexpr int kUnroll = 8;

__global__ void chunk_scan_kernel(Dims d, Work w) {
  const int64_t PN = d.P * d.N, nc = d.nc;
  MAMBA_GRID_STRIDE_LOOP(i, d.B * d.H * PN) {
    const int64_t bh = i / PN, e = i % PN;
    float* Z = w.Z + bh * nc * PN + e;
    float* F = w.F + bh * nc * PN + e;
    const float* dec = w.dec + bh * nc;
    float run = 0.0f;
    for (int64_t c0 = 0; c0 < nc; c0 += kUnroll) {
      float local[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) local[u] = c0 + u < nc ? Z[(c0 + u) * PN] : 0.0f;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (c0 + u < nc) {
          Z[(c0 + u) * PN] = run;
          run = dec[c0 + u] * run + local[u];
        }
    }
    run = 0.0f;
    for (int64_t c1 = nc - 1; c1 >= 0; c1 -= kUnroll) {  // chunks c1, c1 − 1, ... down to 0
      float local[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) local[u] = c1 - u >= 0 ? F[(c1 - u) * PN] : 0.0f;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (c1 - u >= 0) {
          F[(c1 - u) * PN] = run;
          run = local[u] + dec[c1 - u] * run;
        }
    }
  }
}

// rowdot_i = q_i·dq_i while dq holds only diag(e^A) dy Z; ddec = e^{A_Q}·⟨F_{c+1}, Z_c⟩. One block
// per chunk; warp per row.
__global__ void dots_kernel(Dims d, Work w) {
  __shared__ float red[32];
  const int64_t ci = blockIdx.x, Q = d.Q, N = d.N, PN = d.P * d.N;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t i = warp; i < Q; i += blockDim.x >> 5) {
    const float* qi = w.qp + (ci * Q + i) * N;
    const float* dqi = w.dq + (ci * Q + i) * N;
    float s = 0.0f;
    for (int64_t n = lane; n < N; n += 32) s += qi[n] * dqi[n];
    s = mamba::cuda::warp_sum(s);
    if (lane == 0) w.rowdot[ci * Q + i] = s;
  }
  float s = 0.0f;
  for (int64_t e = threadIdx.x; e < PN; e += blockDim.x) s += w.Z[ci * PN + e] * w.F[ci * PN + e];
  s = mamba::cuda::block_sum(s, red);
  if (threadIdx.x == 0) w.ddec[ci] = w.dec[ci] * s;
}

// Row Q (dM_Qj = v_j·KF_j), the scalar gradients of the chunk, dx = dv + m⊙KF + D·dy, dq and dk
// back to the op's layout, and the chunk's part of dD. One block per chunk.
__global__ void finish_kernel(Dims d, Work w, const float* __restrict__ D, float* __restrict__ dx,
                              float* __restrict__ dq, float* __restrict__ dk) {
  __shared__ float s_dA[kMaxQ + 1], s_T[kMaxQ];
  __shared__ double red[kThreads / 32];
  const int64_t ci = blockIdx.x, b = chunk_b(d, ci), h = chunk_h(d, ci), t0 = (ci % d.nc) * d.Q;
  const int64_t Q = d.Q, Q1 = Q + 1, N = d.N, P = d.P;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t j = warp; j < Q; j += blockDim.x >> 5) {
    const float* v = w.vp + (ci * Q + j) * P;
    const float* kf = w.KF + (ci * Q + j) * P;
    float s = 0.0f;
    for (int64_t p = lane; p < P; p += 32) s += v[p] * kf[p];
    s = mamba::cuda::warp_sum(s);
    if (lane == 0) {
      const float* A = w.A + ci * Q1;
      const float dcq = s * expf(A[Q] - A[j]), Tq = s * w.mq[ci * Q + j];
      w.dgam[ci * Q + j] = w.sg[ci * Q + j] + dcq;
      w.dbl[ci * Q1 + j + 1] = w.sb[ci * Q1 + j + 1] + dcq;
      s_dA[j] = w.sA[ci * Q1 + j] + w.rowdot[ci * Q + j] - Tq;
      s_T[j] = Tq;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float dAQ = w.sA[ci * Q1 + Q] + w.ddec[ci];
    for (int64_t j = 0; j < Q; ++j) dAQ += s_T[j];
    float suffix = dAQ;
    w.dadl[ci * Q1 + Q] = suffix;
    for (int64_t u = Q - 1; u >= 1; --u) w.dadl[ci * Q1 + u] = suffix += s_dA[u];
    w.dadl[ci * Q1] = 0.0f;
    w.dbl[ci * Q1] = 0.0f;
  }
  const float Dh = D[h];
  double dD = 0.0;
  for (int64_t i = threadIdx.x; i < Q * P; i += blockDim.x) {
    const int64_t u = i / P, p = i % P, t = t0 + u;
    if (t >= d.L) continue;
    const int64_t j = ci * Q * P + i;
    const float g = w.dyp[j];
    dx[((b * d.L + t) * d.H + h) * P + p] = w.dv[j] + w.mq[ci * Q + u] * w.KF[j] + Dh * g;
    dD += static_cast<double>(g) * w.vp[j];
  }
  for (int64_t i = threadIdx.x; i < Q * N; i += blockDim.x) {
    const int64_t u = i / N, n = i % N, t = t0 + u;
    if (t >= d.L) continue;
    const int64_t dst = ((b * d.L + t) * d.H + h) * N + n;
    dq[dst] = w.dq[ci * Q * N + i];
    dk[dst] = w.dk[ci * Q * N + i];
  }
  for (int off = 16; off > 0; off >>= 1) dD += __shfl_xor_sync(0xffffffffu, dD, off);
  if (lane == 0) red[warp] = dD;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int i = 0; i < (kThreads >> 5); ++i) s += red[i];
    w.dD_part[ci] = s;
  }
}

// Per token: dadt, ddt, dtrap from the chunk's dγ, db, dadt suffix sums (the first token of a
// chunk takes db and dadt from row Q of the previous chunk).
__global__ void token_kernel(Dims d, Work w, const float* __restrict__ dt, const float* __restrict__ trap,
                             float* __restrict__ dadt, float* __restrict__ ddt, float* __restrict__ dtrap) {
  const int64_t Q = d.Q, Q1 = Q + 1;
  MAMBA_GRID_STRIDE_LOOP(o, d.B * d.L * d.H) {
    const int64_t h = o % d.H, t = (o / d.H) % d.L, b = o / d.H / d.L;
    const int64_t c = t / Q, u = t % Q, ci = (b * d.H + h) * d.nc + c;
    const float dg = w.dgam[ci * Q + u];
    float db = 0.0f, da = 0.0f;
    if (u > 0) {
      db = w.dbl[ci * Q1 + u];
      da = w.dadl[ci * Q1 + u];
    } else if (c > 0) {
      db = w.dbl[(ci - 1) * Q1 + Q];
      da = w.dadl[(ci - 1) * Q1 + Q];
    }
    const float lam = trap[o];
    dadt[o] = da;
    ddt[o] = dg * lam + db * (1.0f - lam);
    dtrap[o] = (dg - db) * dt[o];
  }
}

// dD_h = Σ over (batch, chunk) of the chunks' parts, in double. One block per (head, slice of the
// B·nc parts): a single thread per head looping over every chunk was a dependent chain of
// hundreds of loads (the longest of the small kernels at batch 256). With one slice the block
// writes dD_h; otherwise its slice sum goes to `slices` and dD_finish_kernel adds them in order.
constexpr int kDdMaxSlices = 64;
constexpr int64_t kDdPartsPerSlice = 8 * kThreads;

__device__ double block_sum_f64(double v, double* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.x == 0)
    for (int i = 0; i < static_cast<int>(blockDim.x >> 5); ++i) s += red[i];
  return s;  // thread 0 only
}

__global__ void dD_kernel(Dims d, const double* __restrict__ part, double* __restrict__ slices,
                          float* __restrict__ dD) {
  __shared__ double red[kThreads / 32];
  const int64_t h = blockIdx.x, n_slices = gridDim.y, items = d.B * d.nc;
  const int64_t per = (items + n_slices - 1) / n_slices, i0 = blockIdx.y * per;
  const int64_t i1 = i0 + per < items ? i0 + per : items;
  double s = 0.0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x)  // item i: batch i / nc, chunk i % nc
    s += part[((i / d.nc) * d.H + h) * d.nc + i % d.nc];
  s = block_sum_f64(s, red);
  if (threadIdx.x != 0) return;
  if (n_slices == 1)
    dD[h] = static_cast<float>(s);
  else
    slices[h * n_slices + blockIdx.y] = s;
}

__global__ void dD_finish_kernel(int64_t H, int64_t n_slices, const double* __restrict__ slices,
                                 float* __restrict__ dD) {
  for (int64_t h = blockIdx.x * blockDim.x + threadIdx.x; h < H; h += blockDim.x * gridDim.x) {
    double s = 0.0;
    for (int64_t j = 0; j < n_slices; ++j) s += slices[h * n_slices + j];
    dD[h] = static_cast<float>(s);
  }
}

// Row-major C[M, Nn] = op(A)·op(B) + beta·C per chunk: column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
void gemm(bool ta, bool tb, int64_t M, int64_t Nn, int64_t K, const float* A, int64_t lda, int64_t sa,
          const float* B, int64_t ldb, int64_t sb, float* C, int64_t ldc, int64_t sc, float beta,
          int64_t batch) {
  const float one = 1.0f;
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      mamba::cuda::cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(Nn), static_cast<int>(M), static_cast<int>(K), &one, B, CUDA_R_32F,
      static_cast<int>(ldb), sb, A, CUDA_R_32F, static_cast<int>(lda), sa, &beta, C, CUDA_R_32F,
      static_cast<int>(ldc), sc, static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

bool mamba3_scan_bwd_cuda_gemm_supported(const Mamba3ScanArgs& a) {
  return !a.mimo_x.defined() && a.q.dim() == 5 && a.q.size(2) == 1;
}

Mamba3ScanGrads mamba3_scan_bwd_cuda_gemm(const Mamba3ScanArgs& a, const Tensor& dy_in) {
  MAMBA_CHECK(mamba3_scan_bwd_cuda_gemm_supported(a), "mamba3_scan_bwd (CUDA, GEMM path): SISO only");
  const Tensor dy = dy_in.contiguous();
  Mamba3ScanGrads g = mamba3_scan_bwd_cuda_grads(a, dy);
  const int64_t B = a.x.size(0), L = a.x.size(1), H = a.x.size(2), P = a.x.size(3), N = a.q.size(4);
  if (B * L * H == 0) return g;
  auto dev = [](const Shape& s) { return Tensor::empty(s, DType::f32, Device::cuda); };
  // Any chunk length gives the same gradients; capped so that the mask kernel's tiles fit.
  const int64_t Q = std::clamp<int64_t>(a.chunk_size, 1, kMaxQ), nc = (L + Q - 1) / Q, C = B * H * nc;
  MAMBA_CHECK(C < (int64_t(1) << 31) && P * N < (int64_t(1) << 31));
  const Dims d{B, L, H, P, N, Q, nc, C};
  const int64_t QN = Q * N, QP = Q * P, QQ = Q * Q, PN = P * N, Q1 = Q + 1;
  // One f32 arena for every buffer (the largest are 4 of C·Q·N, 6 of C·Q·P, 2 of C·P·N).
  const int64_t sizes[] = {C * QN, C * QN, C * QP, C * QP, C * QP, C * QP, C * Q1,
                           C * Q,  C * Q1, C * Q,  C,      C * QQ, C * QQ, C * QP,
                           C * QP, C * QN, C * QN, C * PN, C * PN, C * Q,  C * Q1,
                           C * Q1, C * Q,  C,      C * Q,  C * Q1, C * Q1, 2 * (C + H * kDdMaxSlices)};
  int64_t total = 0;
  for (const int64_t s : sizes) total += (s + 63) / 64 * 64;
  const Tensor arena = dev({total});
  Work w{};
  float* base = arena.f32();
  float** ptrs[] = {&w.qp, &w.kp,  &w.vp, &w.dyp, &w.vm,     &w.dye,  &w.A,    &w.gam, &w.bq,
                    &w.mq, &w.dec, &w.G,  &w.dW,  &w.dv,     &w.KF,   &w.dq,   &w.dk,  &w.Z,
                    &w.F,  &w.sg,  &w.sb, &w.sA,  &w.rowdot, &w.ddec, &w.dgam, &w.dbl, &w.dadl};
  static_assert(sizeof(ptrs) / sizeof(ptrs[0]) + 1 == sizeof(sizes) / sizeof(sizes[0]));
  for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); ++i) {
    *ptrs[i] = base;
    base += (sizes[i] + 63) / 64 * 64;
  }
  w.dD_part = reinterpret_cast<double*>(base);  // C doubles, 256-byte aligned, then the dD slices
  double* dD_slices = w.dD_part + C;
  cudaStream_t stream = mamba::cuda::stream();
  const unsigned int blocks = static_cast<unsigned int>(C);
  pack_kernel<<<blocks, kThreads, 0, stream>>>(d, w, a.x.f32(), a.q.f32(), a.k.f32(), a.adt.f32(), a.dt.f32(),
                                               a.trap.f32(), dy.f32());
  CUDA_CHECK_LAUNCH();
  gemm(false, true, Q, Q, N, w.qp, N, QN, w.kp, N, QN, w.G, Q, QQ, 0.0f, C);    // G = q kᵀ
  gemm(false, true, Q, Q, P, w.dyp, P, QP, w.vp, P, QP, w.dW, Q, QQ, 0.0f, C);  // dy vᵀ
  mask_kernel<<<blocks, kThreads, 0, stream>>>(d, w);
  CUDA_CHECK_LAUNCH();
  gemm(true, false, Q, P, Q, w.G, Q, QQ, w.dyp, P, QP, w.dv, P, QP, 0.0f, C);  // dv = Wᵀ dy
  gemm(true, false, Q, N, Q, w.dW, Q, QQ, w.qp, N, QN, w.dk, N, QN, 0.0f, C);  // dk = dGᵀ q
  gemm(true, false, P, N, Q, w.vm, P, QP, w.kp, N, QN, w.Z, N, PN, 0.0f, C);   // Σ m_j v_j k_jᵀ
  gemm(true, false, P, N, Q, w.dye, P, QP, w.qp, N, QN, w.F, N, PN, 0.0f, C);  // dyᵀ diag(e^A) q
  chunk_scan_kernel<<<mamba::cuda::grid_for(B * H * PN), 256, 0, stream>>>(d, w);
  CUDA_CHECK_LAUNCH();
  gemm(false, false, Q, N, P, w.dye, P, QP, w.Z, N, PN, w.dq, N, QN, 0.0f, C);  // diag(e^A) dy Z
  dots_kernel<<<blocks, kThreads, 0, stream>>>(d, w);
  CUDA_CHECK_LAUNCH();
  gemm(false, false, Q, N, Q, w.dW, Q, QQ, w.kp, N, QN, w.dq, N, QN, 1.0f, C);  // dq += dG k
  gemm(false, false, Q, N, P, w.vm, P, QP, w.F, N, PN, w.dk, N, QN, 1.0f, C);   // dk += diag(m) v F
  gemm(false, true, Q, P, N, w.kp, N, QN, w.F, N, PN, w.KF, P, QP, 0.0f, C);    // k Fᵀ
  finish_kernel<<<blocks, kThreads, 0, stream>>>(d, w, a.D.f32(), g.dx.f32(), g.dq.f32(), g.dk.f32());
  CUDA_CHECK_LAUNCH();
  token_kernel<<<mamba::cuda::grid_for(B * L * H), 256, 0, stream>>>(
      d, w, a.dt.f32(), a.trap.f32(), g.dadt.f32(), g.ddt.f32(), g.dtrap.f32());
  CUDA_CHECK_LAUNCH();
  const int64_t dD_slices_n =
      std::clamp<int64_t>((B * nc + kDdPartsPerSlice - 1) / kDdPartsPerSlice, 1, kDdMaxSlices);
  dD_kernel<<<dim3(static_cast<unsigned int>(H), static_cast<unsigned int>(dD_slices_n)), kThreads, 0,
              stream>>>(d, w.dD_part, dD_slices, g.dD.f32());
  CUDA_CHECK_LAUNCH();
  if (dD_slices_n > 1) {
    dD_finish_kernel<<<mamba::cuda::grid_for(H), 256, 0, stream>>>(H, dD_slices_n, dD_slices, g.dD.f32());
    CUDA_CHECK_LAUNCH();
  }
  return g;
}

}  // namespace mamba::ops
