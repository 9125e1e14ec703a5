// Backward of SSD on CUDA in the chunked matrix ("dual") form (SPEC §2.3), where almost all work
// is cuBLAS strided-batched GEMMs. Per (batch, head) and chunk of Q tokens (padded at the end with
// dt = x = B = C = dy = 0, which changes nothing), with a_t = dt_t·A, cs_i = Σ_{k≤i} a_k inside the
// chunk, Xd = dt·x, L[i,j] = exp(cs_i − cs_j) (j ≤ i), w_j = exp(cs_last − cs_j), e_i = exp(cs_i),
// T = exp(cs_last), the forward is
//   M = (C Bᵀ) ∘ L,  y = M·Xd + e ∘ (C·S_inᵀ) + D·x,
//   S_loc = (w ∘ Xd)ᵀ B,  S_in[c+1] = T[c]·S_in[c] + S_loc[c],  S_in[0] = 0.
// Its backward, with G[c] = dS_in[c+1] (the gradient of the state leaving chunk c):
//   dS_in[c] = (e ∘ dy)ᵀ C + T[c]·G[c]            (reverse pass over chunks; dT = Σ G ∘ S_in)
//   dXd = Mᵀ·dy + w ∘ (B·Gᵀ)                       (U = B·Gᵀ)
//   dM = dy·Xdᵀ;  dC = (dM∘L)·B + (e∘dy)·S_in;  dB = (dM∘L)ᵀ·C + (w∘Xd)·G
//   dcs_i = Σ_j (dM∘M)[i,j] − Σ_j (dM∘M)[j,i] − ω_i + ε_i  (+ Σ ω + dT·T at i = last)
//     with ω_j = Σ_p (w∘Xd)_j·U_j (through w) and ε_i = Σ_p (e∘dy)_i·(C·S_inᵀ)_i (through e);
//   da_k = Σ_{i≥k} dcs_i;  dx = dt·dXd + D·dy;  ddt = Σ_p x·dXd + A·da;  dA = Σ dt·da.
// Layouts keep the heads of a group side by side, so every GEMM that mixes B or C (shared by the
// group) with per-head tensors is one GEMM per (batch, chunk) with the heads folded into an outer
// or the inner dimension: token tensors are [batch, Lp, H, P] (a group's heads form a Q × (hpg·P)
// matrix of row stride H·P), states [batch, nc, H, P, N] (a group's rows (head, p) contiguous).
// Only the Q×Q products of a single head (Mᵀ·dy, dy·Xdᵀ) loop over heads. The sum of dM∘L over
// the heads of a group is formed first, so dB and dC take one Q×Q GEMM per group.
// fp32 operands and compute by default (no TF32). With fast_bf16 (the bf16 forward's flag), the
// per-head Q×Q products (Mᵀ·dy, dy·Xdᵀ: most of the FLOPs, and M, dM most of the memory traffic)
// take bf16 operands with M and dM stored in bf16, and the other GEMMs use TF32 tensor cores; all
// accumulate in fp32.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/ssd/ssd.h"

namespace mamba::ops {

namespace {

constexpr int kThreads = 256;  // every kernel; also the largest chunk (one thread per token)

struct Dims {
  int64_t batch, L, H, P, G, N, hpg, Q, nc, Lp;
  bool d_per_channel;
};

// Row-major C[m×n] (+)= op(A)·op(B) per batch item, op(A) m×k, op(B) k×n; ld = row strides.
// Operand types: f32 (TF32 tensor cores when `tf32`) or bf16 (fp32 accumulation).
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* A, int64_t lda, int64_t sA,
          const void* B, int64_t ldb, int64_t sB, void* C, int64_t ldc, int64_t sC, int64_t batch, float beta,
          bool tf32, cudaDataType_t tAB = CUDA_R_32F, cudaDataType_t tC = CUDA_R_32F) {
  const float alpha = 1.0f;
  const cublasComputeType_t compute =
      tAB == CUDA_R_32F && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  // Column-major view: Cᵀ[n×m] = op(B)ᵀ·op(A)ᵀ, each row-major buffer read as its transpose.
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      mamba::cuda::cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, B, tAB, static_cast<int>(ldb),
      sB, A, tAB, static_cast<int>(lda), sA, &beta, C, tC, static_cast<int>(ldc), sC, static_cast<int>(batch),
      compute, CUBLAS_GEMM_DEFAULT));
}

// Storage of the per-head Q×Q GEMMs' operands (xd, dyp, M, dM): float, or bf16 in fast_bf16 mode.
template <class T>
__device__ __forceinline__ T store_as(float v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return __float2bfloat16(v);
}
__device__ __forceinline__ float load_f(float v) {
  return v;
}
__device__ __forceinline__ float load_f(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// Per (chunk, head, batch): cs by a block scan, T, and the padded token operands
// xd = dt·x, xw = w·dt·x, dyp = dy, dye = e·dy.
template <class TQ>
__global__ void prep_kernel(Dims z, const float* x, const float* dt, const float* A, const float* dy,
                            float* cs, float* T, TQ* xd, float* xw, TQ* dyp, float* dye) {
  __shared__ float s_cs[kThreads], s_dt[kThreads], s_w[kThreads], s_e[kThreads];
  const int64_t c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, bch = (b * z.nc + c) * z.H + h;
  const int i = threadIdx.x;
  const int64_t t = c * z.Q + i;
  const float d = (i < z.Q && t < z.L) ? dt[(b * z.L + t) * z.H + h] : 0.0f;
  s_cs[i] = d * A[h];
  for (int off = 1; off < kThreads; off <<= 1) {
    __syncthreads();
    const float add = i >= off ? s_cs[i - off] : 0.0f;
    __syncthreads();
    s_cs[i] += add;
  }
  __syncthreads();
  const float last = s_cs[z.Q - 1];
  if (i < z.Q) {
    cs[bch * z.Q + i] = s_cs[i];
    s_dt[i] = d;
    s_e[i] = expf(s_cs[i]);
    s_w[i] = expf(last - s_cs[i]);
  }
  if (i == 0) T[bch] = expf(last);
  __syncthreads();
  const int QP = static_cast<int>(z.Q * z.P), P = static_cast<int>(z.P);  // ≤ 256·256
  for (int idx = i; idx < QP; idx += blockDim.x) {
    const int j = idx / P, p = idx % P;
    const int64_t tj = c * z.Q + j;
    const int64_t dst = ((b * z.Lp + tj) * z.H + h) * z.P + p;
    float xv = 0.0f, dyv = 0.0f;
    if (tj < z.L) {
      const int64_t src = ((b * z.L + tj) * z.H + h) * z.P + p;
      xv = x[src], dyv = dy[src];
    }
    xd[dst] = store_as<TQ>(s_dt[j] * xv);
    xw[dst] = s_w[j] * (s_dt[j] * xv);
    dyp[dst] = store_as<TQ>(dyv);
    dye[dst] = s_e[j] * dyv;
  }
}

// dst [batch, Lp, cols] ← src [batch, L, cols], zero rows past L.
__global__ void pad_kernel(float* dst, const float* src, int64_t batch, int64_t L, int64_t Lp, int64_t cols) {
  const int64_t total = batch * Lp * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / (Lp * cols), r = i % (Lp * cols);
    dst[i] = r / cols < L ? src[b * L * cols + r] : 0.0f;
  }
}

// dst [batch, L, cols] ← src [batch, Lp, cols].
__global__ void unpad_kernel(float* dst, const float* src, int64_t batch, int64_t L, int64_t Lp,
                             int64_t cols) {
  const int64_t total = batch * L * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / (L * cols), r = i % (L * cols);
    dst[i] = src[b * Lp * cols + r];
  }
}

// Per state entry of one (batch, head): forward, S (S_loc) becomes the state entering each chunk;
// reverse, dS (dS_off) becomes G, the gradient of the state leaving each chunk, and dT[c] gets
// Σ G[c]∘S_in[c] (warp sums, then atomics).
__global__ void pass_kernel(Dims z, const float* T, float* S, float* dS, float* dT) {
  const int64_t PN = z.P * z.N, e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.y / z.H, h = blockIdx.y % z.H;
  const bool in = e < PN;
  float carry = 0.0f;
  for (int64_t c = 0; c < z.nc; ++c) {
    const int64_t bch = (b * z.nc + c) * z.H + h;
    if (in) {
      const float local = S[bch * PN + e];
      S[bch * PN + e] = carry;
      carry = T[bch] * carry + local;
    }
  }
  carry = 0.0f;
  for (int64_t c = z.nc - 1; c >= 0; --c) {
    const int64_t bch = (b * z.nc + c) * z.H + h;
    float part = 0.0f;
    if (in) {
      const float local = dS[bch * PN + e];
      dS[bch * PN + e] = carry;
      part = carry * S[bch * PN + e];
      carry = local + T[bch] * carry;
    }
    part = mamba::cuda::warp_sum(part);
    if ((threadIdx.x & 31) == 0 && part != 0.0f) atomicAdd(&dT[bch], part);
  }
}

// M[b,c,h] = CB[b,c,g] ∘ L (zero above the diagonal). Block per (batch·chunk·head, row i), a
// thread per column j (blockDim = Q): no 64-bit index divisions over the Q×Q elements.
template <class TQ>
__global__ void m_kernel(Dims z, const float* CB, const float* cs, TQ* M) {
  const int64_t bch = blockIdx.x, i = blockIdx.y, j = threadIdx.x, Q = z.Q;
  const int H = static_cast<int>(z.H), bc = static_cast<int>(blockIdx.x) / H,
            g = static_cast<int>(blockIdx.x) % H / static_cast<int>(z.hpg);  // 32-bit: cheap
  M[(bch * Q + i) * Q + j] = store_as<TQ>(
      j <= i ? CB[((bc * z.G + g) * Q + i) * Q + j] * expf(cs[bch * Q + i] - cs[bch * Q + j]) : 0.0f);
}

// Per (batch·chunk, head): W = dM ∘ M; dcsd_i = Σ_j W[i,j] − Σ_j W[j,i]. Warp per row (coalesced),
// column sums per warp in shared memory.
template <class TQ>
__global__ void rowcol_kernel(Dims z, const TQ* dM, const float* CB, const float* cs, float* dcsd) {
  constexpr int kWarps = kThreads / 32;
  __shared__ float s_col[kWarps][kThreads], s_row[kThreads], s_cs[kThreads];
  const int64_t bch = blockIdx.x, bc = bch / z.H, g = (bch % z.H) / z.hpg, QQ = z.Q * z.Q;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int w = 0; w < kWarps; ++w) s_col[w][threadIdx.x] = 0.0f;
  s_row[threadIdx.x] = 0.0f;
  if (threadIdx.x < z.Q) s_cs[threadIdx.x] = cs[bch * z.Q + threadIdx.x];
  __syncthreads();
  const TQ* dm = dM + bch * QQ;
  const float* cb = CB + (bc * z.G + g) * QQ;
  for (int64_t i = warp; i < z.Q; i += kWarps) {
    float acc = 0.0f;
    for (int64_t j = lane; j <= i; j += 32) {
      const float wv = load_f(dm[i * z.Q + j]) * cb[i * z.Q + j] * expf(s_cs[i] - s_cs[j]);
      acc += wv;
      s_col[warp][j] += wv;
    }
    acc = mamba::cuda::warp_sum(acc);
    if (lane == 0) s_row[i] = acc;
  }
  __syncthreads();
  if (threadIdx.x < z.Q) {
    float col = 0.0f;
    for (int w = 0; w < kWarps; ++w) col += s_col[w][threadIdx.x];
    dcsd[bch * z.Q + threadIdx.x] = s_row[threadIdx.x] - col;
  }
}

// dMLs[b,c,g] = Σ over the heads of group g of dM ∘ L. Block per (batch·chunk·group, row i), a
// thread per column j.
template <class TQ>
__global__ void dml_kernel(Dims z, const TQ* dM, const float* cs, float* dMLs) {
  const int64_t bcg = blockIdx.x, i = blockIdx.y, j = threadIdx.x, Q = z.Q;
  const int G = static_cast<int>(z.G), bc = static_cast<int>(blockIdx.x) / G,
            g = static_cast<int>(blockIdx.x) % G;
  float s = 0.0f;
  if (j <= i) {
    for (int64_t k = 0; k < z.hpg; ++k) {
      const int64_t bch = bc * z.H + g * z.hpg + k;
      s += load_f(dM[(bch * Q + i) * Q + j]) * expf(cs[bch * Q + i] - cs[bch * Q + j]);
    }
  }
  dMLs[(bcg * Q + i) * Q + j] = s;
}

constexpr int kMaxP = 256;  // head_dim bound of final_kernel's per-lane dD sums

struct FinalArgs {
  const float *x, *dt, *A, *D, *dy, *cs, *T, *dT, *dcsd, *U, *V, *xw, *dye, *dXdd;
  float *dx, *ddt, *dA, *dD;
};

// Per (chunk, head, batch): dXd = Mᵀdy + w∘U, dx, Σ_p x·dXd, ω, ε; then dcs, its reverse
// cumulative sum da, ddt, dA, dD. Warp per token, lanes over head_dim.
__global__ void final_kernel(Dims z, FinalArgs f) {
  constexpr int kWarps = kThreads / 32, kSlots = kMaxP / 32;
  __shared__ float s_dcs[kThreads], s_sx[kThreads], s_om[kThreads], s_dD[kMaxP], s_red[32];
  const int64_t c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, bch = (b * z.nc + c) * z.H + h;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t p = threadIdx.x; p < z.P; p += blockDim.x) s_dD[p] = 0.0f;
  const float cs_last = f.cs[bch * z.Q + z.Q - 1];
  float dD_acc[kSlots] = {};
  for (int64_t j = warp; j < z.Q; j += kWarps) {
    const int64_t t = c * z.Q + j;
    const bool real = t < z.L;
    const float w = expf(cs_last - f.cs[bch * z.Q + j]);
    const float d = real ? f.dt[(b * z.L + t) * z.H + h] : 0.0f;
    float sx = 0.0f, om = 0.0f, ep = 0.0f;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int64_t p = lane + 32 * s;
      if (p >= z.P) continue;  // (not break: keeps the loop unrolled, dD_acc in registers)
      const int64_t tok = ((b * z.Lp + t) * z.H + h) * z.P + p;
      const float u = f.U[tok], dxd = f.dXdd[tok] + w * u;
      om += f.xw[tok] * u;
      ep += f.dye[tok] * f.V[tok];
      if (real) {
        const int64_t src = ((b * z.L + t) * z.H + h) * z.P + p;
        const float xv = f.x[src], dyv = f.dy[src];
        const float Dc = z.d_per_channel ? f.D[h * z.P + p] : f.D[h];
        f.dx[src] = d * dxd + Dc * dyv;
        sx += xv * dxd;
        dD_acc[s] += dyv * xv;
      }
    }
    sx = mamba::cuda::warp_sum(sx);
    om = mamba::cuda::warp_sum(om);
    ep = mamba::cuda::warp_sum(ep);
    if (lane == 0) {
      s_sx[j] = sx;
      s_om[j] = om;
      s_dcs[j] = f.dcsd[bch * z.Q + j] - om + ep;
    }
  }
  __syncthreads();
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int64_t p = lane + 32 * s;
    if (p < z.P) atomicAdd(&s_dD[p], dD_acc[s]);
  }
  if (threadIdx.x == 0) {
    // cs_last also carries every ω (through w) and the chunk decay T.
    float om_total = 0.0f;
    for (int64_t j = 0; j < z.Q; ++j) om_total += s_om[j];
    s_dcs[z.Q - 1] += om_total + f.dT[bch] * f.T[bch];
    float run = 0.0f;
    for (int64_t j = z.Q - 1; j >= 0; --j) {
      run += s_dcs[j];
      s_dcs[j] = run;
    }
  }
  __syncthreads();
  float dA_part = 0.0f;
  if (threadIdx.x < z.Q) {
    const int64_t t = c * z.Q + threadIdx.x;
    if (t < z.L) {
      const float da = t == 0 ? 0.0f : s_dcs[threadIdx.x];  // no state before the first token
      const float d = f.dt[(b * z.L + t) * z.H + h];
      f.ddt[(b * z.L + t) * z.H + h] = f.A[h] * da + s_sx[threadIdx.x];
      dA_part = d * da;
    }
  }
  dA_part = mamba::cuda::block_sum(dA_part, s_red);
  if (threadIdx.x == 0) atomicAdd(&f.dA[h], dA_part);
  // block_sum synchronized, so s_dD is complete.
  if (z.d_per_channel) {
    for (int64_t p = threadIdx.x; p < z.P; p += blockDim.x) atomicAdd(&f.dD[h * z.P + p], s_dD[p]);
  } else if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int64_t p = 0; p < z.P; ++p) s += s_dD[p];
    atomicAdd(&f.dD[h], s);
  }
}

Tensor workspace(std::initializer_list<int64_t> shape) {
  return Tensor::empty(Shape(shape), DType::f32, Device::cuda);
}

// The GEMM form after the checks; TQ: storage of the per-head Q×Q GEMMs' operands.
template <class TQ>
void run(const Dims& z, const SsdArgs& a, const Tensor& dy, SsdGrads& g) {
  const int64_t batch = z.batch, H = z.H, P = z.P, G = z.G, N = z.N, Q = z.Q, nc = z.nc, Lp = z.Lp,
                hpg = z.hpg, BC = batch * nc, QQ = Q * Q;
  const bool tf32 = a.fast_bf16;
  // The per-head Q×Q GEMMs' operands: TQ; their cuBLAS type.
  const bool bf = !std::is_same_v<TQ, float>;
  const DType dq = bf ? DType::bf16 : DType::f32;
  const cudaDataType_t tq = bf ? CUDA_R_16BF : CUDA_R_32F;
  const Tensor cs = workspace({BC, H, Q}), T = workspace({BC, H}),
               dT = Tensor::zeros({BC, H}, DType::f32, Device::cuda);
  const Tensor xd = Tensor::empty({batch, Lp, H, P}, dq, Device::cuda), xw = workspace({batch, Lp, H, P}),
               dyp = Tensor::empty({batch, Lp, H, P}, dq, Device::cuda), dye = workspace({batch, Lp, H, P});
  const Tensor U = workspace({batch, Lp, H, P}), V = workspace({batch, Lp, H, P}),
               dXdd = workspace({batch, Lp, H, P});
  const Tensor Bp = workspace({batch, Lp, G, N}), Cp = workspace({batch, Lp, G, N}),
               dBp = workspace({batch, Lp, G, N}), dCp = workspace({batch, Lp, G, N});
  const Tensor S = workspace({BC, H, P, N}), dS = workspace({BC, H, P, N});
  const Tensor CB = workspace({BC, G, Q, Q}), dMLs = workspace({BC, G, Q, Q});
  const Tensor M = Tensor::empty({BC, H, Q, Q}, dq, Device::cuda),
               dM = Tensor::empty({BC, H, Q, Q}, dq, Device::cuda);
  const Tensor dcsd = workspace({BC, H, Q});
  cudaStream_t st = mamba::cuda::stream();
  const unsigned grid_tok = mamba::cuda::grid_for(batch * Lp * G * N);
  const dim3 chunk_grid(static_cast<unsigned>(nc), static_cast<unsigned>(H), static_cast<unsigned>(batch));
  MAMBA_CHECK(nc < (int64_t(1) << 31) && batch * H <= 65535, "ssd_bwd (CUDA, GEMM form): grid too large");

  prep_kernel<TQ><<<chunk_grid, kThreads, 0, st>>>(z, a.x.f32(), a.dt.f32(), a.A.f32(), dy.f32(), cs.f32(),
                                                   T.f32(), xd.data<TQ>(), xw.f32(), dyp.data<TQ>(),
                                                   dye.f32());
  CUDA_CHECK_LAUNCH();
  pad_kernel<<<grid_tok, kThreads, 0, st>>>(Bp.f32(), a.B.f32(), batch, z.L, Lp, G * N);
  CUDA_CHECK_LAUNCH();
  pad_kernel<<<grid_tok, kThreads, 0, st>>>(Cp.f32(), a.C.f32(), batch, z.L, Lp, G * N);
  CUDA_CHECK_LAUNCH();

  const int64_t sTH = Q * H * P, sTG = Q * G * N, sST = H * P * N;  // per (batch, chunk) strides
  for (int64_t gi = 0; gi < G; ++gi) {
    const int64_t hoff = gi * hpg * P, noff = gi * N, soff = gi * hpg * P * N, qoff = gi * QQ;
    // CB = C Bᵀ (per group).
    gemm(false, true, Q, Q, N, Cp.f32() + noff, G * N, sTG, Bp.f32() + noff, G * N, sTG, CB.f32() + qoff, Q,
         G * QQ, BC, 0.0f, tf32);
    // S_loc[(k,p), n] = Σ_j xw[j,(k,p)]·B[j,n];  dS_off = Σ_i dye[i,(k,p)]·C[i,n].
    gemm(true, false, hpg * P, N, Q, xw.f32() + hoff, H * P, sTH, Bp.f32() + noff, G * N, sTG, S.f32() + soff,
         N, sST, BC, 0.0f, tf32);
    gemm(true, false, hpg * P, N, Q, dye.f32() + hoff, H * P, sTH, Cp.f32() + noff, G * N, sTG,
         dS.f32() + soff, N, sST, BC, 0.0f, tf32);
  }
  pass_kernel<<<dim3(mamba::cuda::ceil_div(P * N, kThreads), static_cast<unsigned>(batch * H)), kThreads, 0,
                st>>>(z, T.f32(), S.f32(), dS.f32(), dT.f32());
  CUDA_CHECK_LAUNCH();
  for (int64_t gi = 0; gi < G; ++gi) {
    const int64_t hoff = gi * hpg * P, noff = gi * N, soff = gi * hpg * P * N;
    // U[j,(k,p)] = Σ_n B[j,n]·G[(k,p),n];  V = C·S_inᵀ likewise.
    gemm(false, true, Q, hpg * P, N, Bp.f32() + noff, G * N, sTG, dS.f32() + soff, N, sST, U.f32() + hoff,
         H * P, sTH, BC, 0.0f, tf32);
    gemm(false, true, Q, hpg * P, N, Cp.f32() + noff, G * N, sTG, S.f32() + soff, N, sST, V.f32() + hoff,
         H * P, sTH, BC, 0.0f, tf32);
    // dC = (e∘dy)·S_in and dB = (w∘Xd)·G, summed over the group's heads through K = hpg·P.
    gemm(false, false, Q, N, hpg * P, dye.f32() + hoff, H * P, sTH, S.f32() + soff, N, sST, dCp.f32() + noff,
         G * N, sTG, BC, 0.0f, tf32);
    gemm(false, false, Q, N, hpg * P, xw.f32() + hoff, H * P, sTH, dS.f32() + soff, N, sST, dBp.f32() + noff,
         G * N, sTG, BC, 0.0f, tf32);
  }
  m_kernel<TQ>
      <<<dim3(static_cast<unsigned>(BC * H), static_cast<unsigned>(Q)), static_cast<unsigned>(Q), 0, st>>>(
          z, CB.f32(), cs.f32(), M.data<TQ>());
  CUDA_CHECK_LAUNCH();
  for (int64_t h = 0; h < H; ++h) {
    // dXd_diag = Mᵀ·dy;  dM = dy·Xdᵀ (one head; batch over (batch, chunk)).
    gemm(true, false, Q, P, Q, M.data<TQ>() + h * QQ, Q, H * QQ, dyp.data<TQ>() + h * P, H * P, sTH,
         dXdd.f32() + h * P, H * P, sTH, BC, 0.0f, tf32, tq, CUDA_R_32F);
    gemm(false, true, Q, Q, P, dyp.data<TQ>() + h * P, H * P, sTH, xd.data<TQ>() + h * P, H * P, sTH,
         dM.data<TQ>() + h * QQ, Q, H * QQ, BC, 0.0f, tf32, tq, tq);
  }
  rowcol_kernel<TQ>
      <<<static_cast<unsigned>(BC * H), kThreads, 0, st>>>(z, dM.data<TQ>(), CB.f32(), cs.f32(), dcsd.f32());
  CUDA_CHECK_LAUNCH();
  dml_kernel<TQ>
      <<<dim3(static_cast<unsigned>(BC * G), static_cast<unsigned>(Q)), static_cast<unsigned>(Q), 0, st>>>(
          z, dM.data<TQ>(), cs.f32(), dMLs.f32());
  CUDA_CHECK_LAUNCH();
  for (int64_t gi = 0; gi < G; ++gi) {
    const int64_t noff = gi * N, qoff = gi * QQ;
    // dC += (Σ dM∘L)·B;  dB += (Σ dM∘L)ᵀ·C.
    gemm(false, false, Q, N, Q, dMLs.f32() + qoff, Q, G * QQ, Bp.f32() + noff, G * N, sTG, dCp.f32() + noff,
         G * N, sTG, BC, 1.0f, tf32);
    gemm(true, false, Q, N, Q, dMLs.f32() + qoff, Q, G * QQ, Cp.f32() + noff, G * N, sTG, dBp.f32() + noff,
         G * N, sTG, BC, 1.0f, tf32);
  }
  FinalArgs f{};
  f.x = a.x.f32(), f.dt = a.dt.f32(), f.A = a.A.f32(), f.D = a.D.f32(), f.dy = dy.f32();
  f.cs = cs.f32(), f.T = T.f32(), f.dT = dT.f32(), f.dcsd = dcsd.f32(), f.U = U.f32(), f.V = V.f32();
  f.xw = xw.f32(), f.dye = dye.f32(), f.dXdd = dXdd.f32();
  f.dx = g.dx.f32(), f.ddt = g.ddt.f32(), f.dA = g.dA.f32(), f.dD = g.dD.f32();
  final_kernel<<<chunk_grid, kThreads, 0, st>>>(z, f);
  CUDA_CHECK_LAUNCH();
  unpad_kernel<<<grid_tok, kThreads, 0, st>>>(g.dB.f32(), dBp.f32(), batch, z.L, Lp, G * N);
  CUDA_CHECK_LAUNCH();
  unpad_kernel<<<grid_tok, kThreads, 0, st>>>(g.dC.f32(), dCp.f32(), batch, z.L, Lp, G * N);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

bool ssd_bwd_gemm_supported(const SsdArgs& a) {
  if (a.x.dim() != 4 || a.B.dim() != 4 || a.B.size(2) < 1 || a.B.size(3) < 1 ||
      a.x.size(2) % a.B.size(2) != 0)
    return false;
  // final_kernel's per-lane head_dim slots; pass_kernel's grid.y = batch·n_heads.
  return a.x.size(3) <= kMaxP && a.x.size(0) * a.x.size(2) <= 65535;
}

// Both chunked backwards' start (this one and ssd_bwd_fast.cu): every argument on the device, and
// the gradients allocated (dA and dD zeroed: they are accumulated).
SsdGrads ssd_bwd_cuda_outputs(const SsdArgs& a, const Tensor& dy_in) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&a.x, &a.dt, &a.A, &a.B, &a.C, &a.D, &dy_in})
    mamba::cuda::check_cuda_tensor(*t, "ssd_bwd argument");
  SsdGrads g;
  g.dx = Tensor::empty(a.x.shape(), DType::f32, Device::cuda);
  g.ddt = Tensor::empty(a.dt.shape(), DType::f32, Device::cuda);
  g.dA = Tensor::zeros({a.x.size(2)}, DType::f32, Device::cuda);
  g.dB = Tensor::empty(a.B.shape(), DType::f32, Device::cuda);
  g.dC = Tensor::empty(a.C.shape(), DType::f32, Device::cuda);
  g.dD = Tensor::zeros(a.D.shape(), DType::f32, Device::cuda);
  return g;
}

SsdGrads ssd_bwd_cuda_gemm(const SsdArgs& a, const Tensor& dy_in) {
  SsdGrads g = ssd_bwd_cuda_outputs(a, dy_in);
  const Tensor dy = dy_in.contiguous();
  Dims z{};
  z.batch = a.x.size(0), z.L = a.x.size(1), z.H = a.x.size(2), z.P = a.x.size(3);
  z.G = a.B.size(2), z.N = a.B.size(3);
  MAMBA_CHECK(a.x.is_contiguous() && a.B.is_contiguous() && a.C.is_contiguous() && a.dt.is_contiguous());
  MAMBA_CHECK(a.B.shape() == a.C.shape() && z.H % z.G == 0 && dy.shape() == a.x.shape());
  MAMBA_CHECK(a.dt.shape() == (Shape{z.batch, z.L, z.H}));
  MAMBA_CHECK(z.P <= kMaxP, "ssd_bwd (CUDA, GEMM form): head_dim " << z.P << " > " << kMaxP);
  z.d_per_channel = a.D.numel() == z.H * z.P;
  MAMBA_CHECK(z.d_per_channel || a.D.numel() == z.H);
  z.hpg = z.H / z.G;
  // Chunk: 256 tokens (the official kernels' size, good GEMM shapes); short sequences a multiple
  // of 32 covering them. The gradient does not depend on it beyond rounding.
  z.Q = std::min<int64_t>(kThreads, std::max<int64_t>(32, (z.L + 31) / 32 * 32));
  z.nc = (z.L + z.Q - 1) / z.Q;
  z.Lp = z.nc * z.Q;
  if (g.dx.numel() == 0) {
    g.ddt = Tensor::zeros(a.dt.shape(), DType::f32, Device::cuda);
    g.dB = Tensor::zeros(a.B.shape(), DType::f32, Device::cuda);
    g.dC = Tensor::zeros(a.C.shape(), DType::f32, Device::cuda);
    return g;
  }
  if (a.fast_bf16)
    run<__nv_bfloat16>(z, a, dy, g);
  else
    run<float>(z, a, dy, g);
  return g;
}

}  // namespace mamba::ops
