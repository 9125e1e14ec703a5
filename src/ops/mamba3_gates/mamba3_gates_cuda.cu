// Mamba-3 gates on CUDA (SPEC §3.3, §3.4 output). Prepare runs three launches: per-(token, head)
// scalars (A·Δ, Δ, λ); the cumulative angle, a block per (batch, head) scanning the tokens in double
// and reducing mod 2π once per token (the CPU op's value up to rounding); then one block per (token, rank)
// for the RMS-normed, biased and rotated q and k of all heads (f32, or bf16 with bf16_operands) — one launch
// for a single token of rank 1 (decode), whose q/k blocks do the scalars and the angle of their heads too.
// Combine: one warp per (token, head).
#include <cuda_bf16.h>

#include <algorithm>
#include <initializer_list>
#include <numbers>
#include <type_traits>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/mamba3_gates/mamba3_angle_scan.cuh"
#include "ops/mamba3_gates/mamba3_gates.h"

namespace mamba::ops {

namespace {

constexpr float kPi = std::numbers::pi_v<float>;
constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;

struct PrepareParams {
  const float* proj;  // [batch, seq_len, width]  [z | x | B | C | dd_dt | dd_A | trap | angles]
  const float *dt_bias, *B_bias, *C_bias, *B_norm_weight, *C_norm_weight;
  float *adt, *dt, *trap;  // outputs (see Mamba3ScanArgs); q and k are kernel arguments (f32 or bf16)
  float* angle;            // [batch, n_heads, n_rope_angles], advanced
  float* phi;              // [batch, seq_len, n_heads, n_rope_angles] scratch: φ after each token
  int64_t batch, seq_len, width, n_heads, rank, n_groups, d_state, n_angles;
  int64_t off_b, off_c, off_dt;  // column offsets of B, C and dd_dt in a proj row
  int64_t heads_per_block;       // q/k kernel: heads per block (grid y covers n_heads)
  bool one_token;                // q/k kernel also does the scalars and the angle (seq_len 1, rank 1)
  float A_floor;
  bool half_split;
  Mamba3Rope rope;
};

// A = −max(f(dd_A), A_floor), f(a) = max(a,0) + 1/(1 − min(a,0)); Δ = softplus(dd_dt + dt_bias);
// λ = sigmoid(trap) (§3.3 items 1-3). One thread per (batch, token, head).
// Writes the scalars of (row bt, head h); returns Δ.
__device__ __forceinline__ float gate_scalars(const PrepareParams& p, int64_t bt, int64_t h) {
  const int64_t H = p.n_heads, i = bt * H + h;
  const float* row = p.proj + bt * p.width;
  const float dd_a = row[p.off_dt + H + h];
  const float A = -fmaxf(fmaxf(dd_a, 0.0f) + 1.0f / (1.0f - fminf(dd_a, 0.0f)), p.A_floor);
  const float dt = mamba::cuda::softplus_f(row[p.off_dt + h] + p.dt_bias[h]);
  p.adt[i] = dt * A;
  p.dt[i] = dt;
  p.trap[i] = mamba::cuda::sigmoid_f(row[p.off_dt + 2 * H + h]);
  return dt;
}

__global__ void mamba3_scalars_kernel(PrepareParams p) {
  const int64_t H = p.n_heads;
  MAMBA_GRID_STRIDE_LOOP(i, p.batch * p.seq_len * H) {
    gate_scalars(p, i / H, i % H);
  }
}

// ω of angle a for the token of proj row `row` (the fixed RoPE frequency for data_independent).
__device__ __forceinline__ float angle_omega(const PrepareParams& p, const float* row, float fixed,
                                             int64_t a) {
  return p.rope == Mamba3Rope::data_independent ? fixed : kPi * tanhf(row[p.off_dt + 3 * p.n_heads + a]);
}

__device__ __forceinline__ float fixed_frequency(int64_t a, int64_t S) {
  return powf(10000.0f, -static_cast<float>(a) / static_cast<float>(S));
}

// φ_t = (φ_{t−1} + ω_t·Δ_t) mod 2π with ω = π·tanh(angles) (or the fixed RoPE frequency, or no Δ
// scaling, for the ablations), from the angle state, which it advances: a block per (batch, head,
// up to 32 angles) scanning the tokens (mamba3_angle_scan.cuh).
__global__ void __launch_bounds__(kAngleThreads) mamba3_angle_kernel(PrepareParams p, AngleTile tile) {
  const int64_t H = p.n_heads, S = p.n_angles, L = p.seq_len;
  const int64_t bh = blockIdx.x / tile.angle_groups, b = bh / H, h = bh % H;
  const int64_t a0 = (blockIdx.x % tile.angle_groups) * tile.sa, a = a0 + threadIdx.x % tile.sa;
  const float* rows = p.proj + b * L * p.width;  // token stride: width
  const float* dt = p.dt + b * L * H + h;        // token stride: H
  float* phi = p.phi + (b * L * H + h) * S;      // token stride: H·S
  float* state = p.angle + bh * S;
  const double init = a < S ? state[a] : 0.0;  // read by every thread before the scan's first barrier
  angle_scan(
      L, S, a0, tile, false,
      [&](int64_t t, int64_t ai) {
        const float scale = p.rope == Mamba3Rope::data_dependent ? dt[t * H] : 1.0f;
        return static_cast<double>(angle_omega(p, rows + t * p.width, fixed_frequency(ai, S), ai)) * scale;
      },
      [&](int64_t t, int64_t ai, double sum) {
        const float ph = wrap_angle(init + sum);
        phi[t * H * S + ai] = ph;
        if (t == L - 1) state[ai] = ph;
      });
}

template <typename T>
__device__ __forceinline__ void store_one(T* dst, float v) {
  if constexpr (std::is_same_v<T, float>)
    *dst = v;
  else
    *dst = __float2bfloat16_rn(v);  // round to nearest, as Tensor::to(bf16)
}

// Two adjacent outputs (dst 8-byte aligned for f32, 4-byte for bf16): one store per thread.
template <typename T>
__device__ __forceinline__ void store_two(T* dst, float v0, float v1) {
  if constexpr (std::is_same_v<T, float>)
    *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
  else
    *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(v0, v1);
}

constexpr int kQkThreads = 256;

// q/k[b,t,r,h,:] = rot_φ(RMSNorm(C/B[b,t,r,g(h),:])·w + bias[h,r,:]) (§3.3 items 4-7). One block
// per (batch, token, rank): the RMSNorm of B and C depends on the group only, so each group is
// normalized once into shared memory; then one thread per (head, rotation pair) adds the head's
// biases and rotates both members of its pair (interleaved pairs (2i, 2i+1), stored as one
// vector; half-split pairs (i, i + N/2)). The block's outputs are one contiguous [n_heads, d_state]
// run of q and of k. T: f32, or bf16 for the tensor-core scan (bf16_operands).
template <typename T>
__global__ void __launch_bounds__(kQkThreads) mamba3_qk_kernel(PrepareParams p, T* q, T* k) {
  extern __shared__ float smem[];  // [2, n_groups, d_state]: normed B·w, then normed C·w; one_token: φ, Δ
  __shared__ float scratch[32];
  const int H = static_cast<int>(p.n_heads), R = static_cast<int>(p.rank), G = static_cast<int>(p.n_groups);
  const int N = static_cast<int>(p.d_state), S = static_cast<int>(p.n_angles);
  const int64_t btr = blockIdx.x, bt = btr / R;
  const int r = static_cast<int>(btr % R);
  const float* row = p.proj + bt * p.width;
  float* bn = smem;
  float* cn = smem + G * N;
  // This block's heads: all, or (few rows: decode) a slice of heads_per_block (blockIdx.y).
  const int h0 = blockIdx.y * p.heads_per_block, n_h = min(H - h0, static_cast<int>(p.heads_per_block));
  float* phi_s = cn + G * N;      // one_token: [n_h, S] the angle after this token
  float* dt_s = phi_s + n_h * S;  // one_token: [n_h] Δ
  if (p.one_token) {              // the scalars and the angle advance of this (single) token, for these heads
    for (int j = threadIdx.x; j < n_h; j += blockDim.x) dt_s[j] = gate_scalars(p, bt, h0 + j);
    __syncthreads();
    for (int i = threadIdx.x; i < n_h * S; i += blockDim.x) {
      const int j = i / S, a = i % S;
      const int64_t ai = (bt * H + h0 + j) * S + a;  // seq_len 1: row bt is batch bt
      float ph = p.angle[ai];
      ph += angle_omega(p, row, fixed_frequency(a, S), a) *
            (p.rope == Mamba3Rope::data_dependent ? dt_s[j] : 1.0f);
      ph -= kTwoPi * floorf(ph / kTwoPi);
      p.angle[ai] = ph;
      phi_s[i] = ph;
    }
  }
  for (int g = 0; g < G; ++g) {
    const float* b_row = row + p.off_b + (r * G + g) * N;
    const float* c_row = row + p.off_c + (r * G + g) * N;
    float ss_b = 0.0f, ss_c = 0.0f;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
      const float bv = b_row[n], cv = c_row[n];
      bn[g * N + n] = bv;
      cn[g * N + n] = cv;
      ss_b += bv * bv;
      ss_c += cv * cv;
    }
    const float rstd_b = 1.0f / sqrtf(mamba::cuda::block_sum(ss_b, scratch) / static_cast<float>(N) + 1e-5f);
    const float rstd_c = 1.0f / sqrtf(mamba::cuda::block_sum(ss_c, scratch) / static_cast<float>(N) + 1e-5f);
    for (int n = threadIdx.x; n < N; n += blockDim.x) {  // the entries this thread wrote above
      bn[g * N + n] = bn[g * N + n] * rstd_b * p.B_norm_weight[n];
      cn[g * N + n] = cn[g * N + n] * rstd_c * p.C_norm_weight[n];
    }
  }
  __syncthreads();
  // Pair u of a head: (2u, 2u+1) interleaved, (u, u + N/2) half-split; rotated by φ_u for u < S.
  // An odd d_state leaves a last unpaired entry (e1 < 0). Without rope the pairing is free, so
  // the interleaved one (vector stores) is used.
  const bool rope = p.rope != Mamba3Rope::none, split = p.half_split && rope;
  const int half = N / 2, units = (N + 1) / 2, heads_per_group = H / G;
  const int64_t out0 = btr * H * N;  // ((bt·R + r)·H + h)·N at h = 0
  for (int i = threadIdx.x; i < n_h * units; i += blockDim.x) {
    const int h = h0 + i / units, u = i % units, g = h / heads_per_group;
    const int e0 = split ? (u < half ? u : N - 1) : 2 * u;
    const int e1 = split ? (u < half ? u + half : -1) : (2 * u + 1 < N ? 2 * u + 1 : -1);
    const float* b_bias = p.B_bias + (h * R + r) * N;
    const float* c_bias = p.C_bias + (h * R + r) * N;
    const float* bg = bn + g * N;
    const float* cg = cn + g * N;
    float k0 = bg[e0] + b_bias[e0], q0 = cg[e0] + c_bias[e0];
    float k1 = e1 >= 0 ? bg[e1] + b_bias[e1] : 0.0f, q1 = e1 >= 0 ? cg[e1] + c_bias[e1] : 0.0f;
    if (rope && u < S && e1 >= 0) {
      const float ph = p.one_token ? phi_s[(h - h0) * S + u] : p.phi[(bt * H + h) * S + u];
      const float cs = cosf(ph), sn = sinf(ph);
      const float k0r = k0 * cs - k1 * sn, k1r = k0 * sn + k1 * cs;
      const float q0r = q0 * cs - q1 * sn, q1r = q0 * sn + q1 * cs;
      k0 = k0r, k1 = k1r, q0 = q0r, q1 = q1r;
    }
    T* kh = k + out0 + h * N;
    T* qh = q + out0 + h * N;
    if (!split && e1 >= 0 && N % 2 == 0) {  // adjacent, and e0 even in an even-length row: aligned
      store_two(kh + e0, k0, k1);
      store_two(qh + e0, q0, q1);
    } else {
      store_one(kh + e0, k0);
      store_one(qh + e0, q0);
      if (e1 >= 0) {
        store_one(kh + e1, k1);
        store_one(qh + e1, q1);
      }
    }
  }
}

struct CombineParams {
  const float *y, *z, *norm_weight, *mimo_z, *mimo_o;  // the last three may be null
  float* o;
  int64_t batch, seq_len, rank, n_heads, head_dim, z_batch_stride, z_seq_stride;
};

constexpr int kCombineWarps = 8;  // (token, head) pairs per block

// o[b,t,h·P+p] = Σ_r mimo_o[h,r,p]·(y_r[p]·rstd_r·w[h·P+p])·silu(z[p]·mimo_z[h,r,p]) with the
// head-wise RMSNorm (rstd over P) only for is_outproj_norm (§3.4). One warp per (b, t, h), lane l
// holding entries p = l, l + 32, ...; kCombineWarps of them per block (a block per (b, t, h)
// made the launch scheduling-bound at large batch × seq_len).
__global__ void __launch_bounds__(32 * kCombineWarps) mamba3_combine_kernel(CombineParams p) {
  const int64_t H = p.n_heads, P = p.head_dim, R = p.rank;
  const int64_t pair = blockIdx.x * int64_t(kCombineWarps) + (threadIdx.x >> 5);
  if (pair >= p.batch * p.seq_len * H) return;  // whole warps leave: the warp sums stay full
  const int64_t h = pair % H, bt = pair / H;
  const int lane = threadIdx.x & 31;
  const float* zr = p.z + (bt / p.seq_len) * p.z_batch_stride + (bt % p.seq_len) * p.z_seq_stride;
  float* o = p.o + bt * H * P + h * P;
  for (int64_t r = 0; r < R; ++r) {
    const float* yr = p.y + ((bt * R + r) * H + h) * P;
    float rstd = 1.0f;
    if (p.norm_weight) {
      float ss = 0.0f;
      for (int64_t pi = lane; pi < P; pi += 32) ss += yr[pi] * yr[pi];
      rstd = 1.0f / sqrtf(mamba::cuda::warp_sum(ss) / static_cast<float>(P) + 1e-5f);
    }
    for (int64_t pi = lane; pi < P; pi += 32) {
      const int64_t hrp = (h * R + r) * P + pi;
      float v = yr[pi] * rstd;
      if (p.norm_weight) v *= p.norm_weight[h * P + pi];
      v *= mamba::cuda::silu_f(zr[h * P + pi] * (p.mimo_z ? p.mimo_z[hrp] : 1.0f));
      const float term = p.mimo_o ? p.mimo_o[hrp] * v : v;
      o[pi] = r == 0 ? term : o[pi] + term;  // the rank sum, in o (this lane's own entries)
    }
  }
}

}  // namespace

void mamba3_prepare_fwd_cuda(const Tensor& proj, const Mamba3Gates& g, Tensor& angle, Mamba3ScanArgs& a) {
  mamba::cuda::check_cuda_tensor(proj, "mamba3_prepare: proj");
  mamba::cuda::check_cuda_tensor(angle, "mamba3_prepare: angle");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&g.dt_bias, &g.B_bias, &g.C_bias,
                                                              &g.B_norm_weight, &g.C_norm_weight})
    mamba::cuda::check_cuda_tensor(*t, "mamba3_prepare: gate parameter");
  MAMBA_CHECK(proj.is_contiguous() && proj.dim() == 3 && angle.is_contiguous());
  const int64_t batch = proj.size(0), seq_len = proj.size(1), width = proj.size(2);
  const int64_t H = g.n_heads, R = g.rank, G = g.n_groups, N = g.d_state, S = g.n_rope_angles;
  const Mamba3Layout cols = g.layout();
  const int64_t off_b = cols.b, off_c = cols.c, off_dt = cols.dt;
  MAMBA_CHECK(width == cols.width && angle.shape() == (Shape{batch, H, S}) && H % G == 0);
  MAMBA_CHECK(N <= 1024, "mamba3_prepare (CUDA): d_state " << N << " > 1024");
  MAMBA_CHECK(2 * S <= N, "mamba3_prepare: " << S << " rope angles with d_state " << N);
  MAMBA_CHECK(2 * G * N * sizeof(float) <= 48 * 1024,
              "mamba3_prepare (CUDA): n_groups " << G << " × d_state " << N << " too large");
  auto dev = [](const Shape& s) { return Tensor::empty(s, DType::f32, Device::cuda); };
  const bool bf16_out = a.bf16_operands && a.fast_bf16;  // q/k only feed the tensor-core scan
  a.q = Tensor::empty({batch, seq_len, R, H, N}, bf16_out ? DType::bf16 : DType::f32, Device::cuda);
  a.k = Tensor::empty({batch, seq_len, R, H, N}, bf16_out ? DType::bf16 : DType::f32, Device::cuda);
  a.adt = dev({batch, seq_len, H});
  a.dt = dev({batch, seq_len, H});
  a.trap = dev({batch, seq_len, H});
  // Few rows (decode): also split the heads over blocks, so that the GPU fills (each block
  // recomputes its rows' norms, a few hundred values). One token of rank 1: the q/k kernel also
  // computes the scalars and advances the angle of its heads (one launch instead of three).
  const int64_t rows = batch * seq_len * R, min_blocks = 2 * mamba::cuda::device_info().multiprocessors;
  const int64_t heads_per_block = rows >= min_blocks ? H : std::max<int64_t>(1, H * rows / min_blocks);
  const size_t smem_norms = 2 * G * N * sizeof(float);
  const size_t smem_token = static_cast<size_t>(heads_per_block * (S + 1)) * sizeof(float);
  const bool one_token = seq_len == 1 && R == 1 && smem_norms + smem_token <= 48 * 1024;
  const Tensor phi = dev({one_token ? 1 : batch, seq_len, H, std::max<int64_t>(S, 1)});
  if (batch * seq_len == 0) return;
  PrepareParams p{.proj = proj.f32(),
                  .dt_bias = g.dt_bias.f32(),
                  .B_bias = g.B_bias.f32(),
                  .C_bias = g.C_bias.f32(),
                  .B_norm_weight = g.B_norm_weight.f32(),
                  .C_norm_weight = g.C_norm_weight.f32(),
                  .adt = a.adt.f32(),
                  .dt = a.dt.f32(),
                  .trap = a.trap.f32(),
                  .angle = angle.f32(),
                  .phi = phi.f32(),
                  .batch = batch,
                  .seq_len = seq_len,
                  .width = width,
                  .n_heads = H,
                  .rank = R,
                  .n_groups = G,
                  .d_state = N,
                  .n_angles = S,
                  .off_b = off_b,
                  .off_c = off_c,
                  .off_dt = off_dt,
                  .heads_per_block = heads_per_block,
                  .one_token = one_token,
                  .A_floor = g.A_floor,
                  .half_split = g.half_split_pairs,
                  .rope = g.rope};
  cudaStream_t stream = mamba::cuda::stream();
  if (!one_token) {
    mamba3_scalars_kernel<<<mamba::cuda::grid_for(batch * seq_len * H), 256, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH();
    if (S > 0) {
      const AngleTile tile = angle_tile(S, seq_len);
      mamba3_angle_kernel<<<static_cast<unsigned int>(batch * H * tile.angle_groups), kAngleThreads, 0,
                            stream>>>(p, tile);
      CUDA_CHECK_LAUNCH();
    }
  }
  const dim3 blocks(static_cast<unsigned int>(rows), mamba::cuda::ceil_div(H, heads_per_block));
  const size_t smem = smem_norms + (one_token ? smem_token : 0);
  // Only as many threads as a group row or the block's (head, pair) units need (64 at the Table 5b
  // shape, where 256 left most idle): while d_state fits the block each thread still sums at most
  // one entry, and block_sum's missing warps add exact zeros, so the same bits.
  const int64_t work = std::max<int64_t>(N, heads_per_block * ((N + 1) / 2));
  const unsigned int threads =
      static_cast<unsigned int>(std::min<int64_t>(kQkThreads, (work + 31) / 32 * 32));
  if (bf16_out)
    mamba3_qk_kernel<__nv_bfloat16><<<blocks, threads, smem, stream>>>(
        p, static_cast<__nv_bfloat16*>(a.q.raw()), static_cast<__nv_bfloat16*>(a.k.raw()));
  else
    mamba3_qk_kernel<float><<<blocks, threads, smem, stream>>>(p, a.q.f32(), a.k.f32());
  CUDA_CHECK_LAUNCH();
}

Tensor mamba3_combine_fwd_cuda(const Tensor& y, const Tensor& z, const Tensor& norm_weight,
                               const Tensor& mimo_z, const Tensor& mimo_o) {
  mamba::cuda::check_cuda_tensor(y, "mamba3_combine: y");
  mamba::cuda::check_cuda_tensor(z, "mamba3_combine: z");
  MAMBA_CHECK(y.is_contiguous() && y.dim() == 5 && z.dim() == 3 && z.stride(2) == 1);
  const int64_t batch = y.size(0), seq_len = y.size(1), R = y.size(2), H = y.size(3), P = y.size(4);
  MAMBA_CHECK(z.size(0) == batch && z.size(1) == seq_len && z.size(2) == H * P);
  MAMBA_CHECK(P <= 1024, "mamba3_combine (CUDA): head_dim " << P << " > 1024");
  MAMBA_CHECK(mimo_o.defined() || R == 1, "mamba3_combine: rank " << R << " without mimo_o");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&norm_weight, &mimo_z, &mimo_o})
    if (t->defined()) mamba::cuda::check_cuda_tensor(*t, "mamba3_combine: parameter");
  Tensor o = Tensor::empty({batch, seq_len, H * P}, DType::f32, Device::cuda);
  if (batch * seq_len * H == 0) return o;
  const CombineParams p{y.f32(),
                        z.f32(),
                        norm_weight.defined() ? norm_weight.f32() : nullptr,
                        mimo_z.defined() ? mimo_z.f32() : nullptr,
                        mimo_o.defined() ? mimo_o.f32() : nullptr,
                        o.f32(),
                        batch,
                        seq_len,
                        R,
                        H,
                        P,
                        z.stride(0),
                        z.stride(1)};
  mamba3_combine_kernel<<<static_cast<unsigned int>(
                              mamba::cuda::ceil_div(batch * seq_len * H, kCombineWarps)),
                          32 * kCombineWarps, 0, mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  return o;
}

}  // namespace mamba::ops
