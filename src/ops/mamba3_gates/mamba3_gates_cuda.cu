// Mamba-3 gates on CUDA (SPEC §3.3, §3.4 output). Prepare runs three launches: per-(token, head)
// scalars (A·Δ, Δ, λ); the cumulative angle, sequential over tokens per (batch, head, angle) and
// reduced mod 2π after every token like the CPU op; then one block per (token, rank, head) for
// the RMS-normed, biased and rotated q and k. Combine: one block per (token, head).
#include <initializer_list>
#include <numbers>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/mamba3_gates/mamba3_gates_cuda.h"

namespace mamba::ops {

namespace {

constexpr float kPi = std::numbers::pi_v<float>;
constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;

struct PrepareParams {
  const float* proj;  // [batch, seq_len, width]  [z | x | B | C | dd_dt | dd_A | trap | angles]
  const float *dt_bias, *B_bias, *C_bias, *B_norm_weight, *C_norm_weight;
  float *q, *k, *adt, *dt, *trap;  // outputs (see Mamba3ScanArgs)
  float* angle;                    // [batch, n_heads, n_rope_angles], advanced
  float* phi;                      // [batch, seq_len, n_heads, n_rope_angles] scratch: φ after each token
  int64_t batch, seq_len, width, n_heads, rank, n_groups, d_state, n_angles;
  int64_t off_b, off_c, off_dt;  // column offsets of B, C and dd_dt in a proj row
  float A_floor;
  bool half_split;
  Mamba3Rope rope;
};

// A = −max(f(dd_A), A_floor), f(a) = max(a,0) + 1/(1 − min(a,0)); Δ = softplus(dd_dt + dt_bias);
// λ = sigmoid(trap) (§3.3 items 1-3). One thread per (batch, token, head).
__global__ void mamba3_scalars_kernel(PrepareParams p) {
  const int64_t H = p.n_heads;
  MAMBA_GRID_STRIDE_LOOP(i, p.batch * p.seq_len * H) {
    const int64_t bt = i / H, h = i % H;
    const float* row = p.proj + bt * p.width;
    const float dd_a = row[p.off_dt + H + h];
    const float A = -fmaxf(fmaxf(dd_a, 0.0f) + 1.0f / (1.0f - fminf(dd_a, 0.0f)), p.A_floor);
    const float dt = mamba::cuda::softplus_f(row[p.off_dt + h] + p.dt_bias[h]);
    p.adt[i] = dt * A;
    p.dt[i] = dt;
    p.trap[i] = mamba::cuda::sigmoid_f(row[p.off_dt + 2 * H + h]);
  }
}

// φ_t = (φ_{t−1} + ω_t·Δ_t) mod 2π with ω = π·tanh(angles) (or the fixed RoPE frequency, or no Δ
// scaling, for the ablations), sequential over tokens. One thread per (batch, head, angle).
__global__ void mamba3_angle_kernel(PrepareParams p) {
  const int64_t H = p.n_heads, S = p.n_angles;
  MAMBA_GRID_STRIDE_LOOP(i, p.batch * H * S) {
    const int64_t b = i / (H * S), h = (i / S) % H, a = i % S;
    const float fixed = powf(10000.0f, -static_cast<float>(a) / static_cast<float>(S));
    float ph = p.angle[i];
    for (int64_t t = 0; t < p.seq_len; ++t) {
      const int64_t bt = b * p.seq_len + t;
      const float omega = p.rope == Mamba3Rope::data_independent
                              ? fixed
                              : kPi * tanhf(p.proj[bt * p.width + p.off_dt + 3 * H + a]);
      const float scale = p.rope == Mamba3Rope::data_dependent ? p.dt[bt * H + h] : 1.0f;
      ph += omega * scale;
      ph -= kTwoPi * floorf(ph / kTwoPi);
      p.phi[(bt * H + h) * S + a] = ph;
    }
    p.angle[i] = ph;
  }
}

// q/k[b,t,r,h,:] = rot_φ(RMSNorm(C/B[b,t,r,g(h),:])·w + bias[h,r,:]) (§3.3 items 4-7). One block
// per (batch, token, rank, head), one thread per state entry; the rotation partner is read from
// shared memory.
__global__ void mamba3_qk_kernel(PrepareParams p) {
  extern __shared__ float smem[];  // [2, d_state]: biased k̃ then q̃
  __shared__ float scratch[32];
  const int64_t H = p.n_heads, R = p.rank, G = p.n_groups, N = p.d_state, S = p.n_angles;
  const int64_t h = blockIdx.x % H, r = (blockIdx.x / H) % R, bt = blockIdx.x / (H * R);
  const int64_t g = h / (H / G), n = threadIdx.x;
  const float* row = p.proj + bt * p.width;
  const bool active = n < N;
  const float bv = active ? row[p.off_b + (r * G + g) * N + n] : 0.0f;
  const float cv = active ? row[p.off_c + (r * G + g) * N + n] : 0.0f;
  const float rstd_b = 1.0f / sqrtf(mamba::cuda::block_sum(bv * bv, scratch) / static_cast<float>(N) + 1e-5f);
  const float rstd_c = 1.0f / sqrtf(mamba::cuda::block_sum(cv * cv, scratch) / static_cast<float>(N) + 1e-5f);
  float* kt = smem;
  float* qt = smem + N;
  if (active) {
    kt[n] = bv * rstd_b * p.B_norm_weight[n] + p.B_bias[(h * R + r) * N + n];
    qt[n] = cv * rstd_c * p.C_norm_weight[n] + p.C_bias[(h * R + r) * N + n];
  }
  __syncthreads();
  if (!active) return;
  float k_out = kt[n], q_out = qt[n];
  if (p.rope != Mamba3Rope::none) {
    // Pair i: (i, i + N/2) half-split (MIMO) or (2i, 2i+1) interleaved (SISO), for i < S.
    const int64_t half = N / 2;
    int64_t i = -1, role = 0;
    if (p.half_split) {
      if (n < S)
        i = n;
      else if (n >= half && n < half + S)
        i = n - half, role = 1;
    } else if (n / 2 < S) {
      i = n / 2, role = n % 2;
    }
    if (i >= 0) {
      const int64_t i0 = p.half_split ? i : 2 * i, i1 = p.half_split ? i + half : 2 * i + 1;
      const float ph = p.phi[(bt * H + h) * S + i], cs = cosf(ph), sn = sinf(ph);
      k_out = role == 0 ? kt[i0] * cs - kt[i1] * sn : kt[i0] * sn + kt[i1] * cs;
      q_out = role == 0 ? qt[i0] * cs - qt[i1] * sn : qt[i0] * sn + qt[i1] * cs;
    }
  }
  const int64_t out = ((bt * R + r) * H + h) * N + n;
  p.k[out] = k_out;
  p.q[out] = q_out;
}

struct CombineParams {
  const float *y, *z, *norm_weight, *mimo_z, *mimo_o;  // the last three may be null
  float* o;
  int64_t batch, seq_len, rank, n_heads, head_dim, z_batch_stride, z_seq_stride;
};

// o[b,t,h·P+p] = Σ_r mimo_o[h,r,p]·(y_r[p]·rstd_r·w[h·P+p])·silu(z[p]·mimo_z[h,r,p]) with the
// head-wise RMSNorm (rstd over P) only for is_outproj_norm (§3.4). One block per (b, t, h).
__global__ void mamba3_combine_kernel(CombineParams p) {
  __shared__ float scratch[32];
  const int64_t H = p.n_heads, P = p.head_dim, R = p.rank;
  const int64_t h = blockIdx.x % H, bt = blockIdx.x / H, pi = threadIdx.x;
  const float* zr = p.z + (bt / p.seq_len) * p.z_batch_stride + (bt % p.seq_len) * p.z_seq_stride;
  float out = 0.0f;
  for (int64_t r = 0; r < R; ++r) {
    const float yv = pi < P ? p.y[((bt * R + r) * H + h) * P + pi] : 0.0f;
    float rstd = 1.0f;
    if (p.norm_weight)
      rstd = 1.0f / sqrtf(mamba::cuda::block_sum(yv * yv, scratch) / static_cast<float>(P) + 1e-5f);
    if (pi < P) {
      const int64_t hrp = (h * R + r) * P + pi;
      float v = yv * rstd;
      if (p.norm_weight) v *= p.norm_weight[h * P + pi];
      v *= mamba::cuda::silu_f(zr[h * P + pi] * (p.mimo_z ? p.mimo_z[hrp] : 1.0f));
      out += p.mimo_o ? p.mimo_o[hrp] * v : v;
    }
  }
  if (pi < P) p.o[bt * H * P + h * P + pi] = out;
}

unsigned int threads_for(int64_t n) {
  return static_cast<unsigned int>((n + 31) / 32 * 32);
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
  const int64_t di = H * g.head_dim, off_b = 2 * di, off_c = off_b + R * G * N, off_dt = off_c + R * G * N;
  MAMBA_CHECK(width == off_dt + 3 * H + S && angle.shape() == (Shape{batch, H, S}) && H % G == 0);
  MAMBA_CHECK(N <= 1024, "mamba3_prepare (CUDA): d_state " << N << " > 1024");
  auto dev = [](const Shape& s) { return Tensor::empty(s, DType::f32, Device::cuda); };
  a.q = dev({batch, seq_len, R, H, N});
  a.k = dev({batch, seq_len, R, H, N});
  a.adt = dev({batch, seq_len, H});
  a.dt = dev({batch, seq_len, H});
  a.trap = dev({batch, seq_len, H});
  const Tensor phi = dev({batch, seq_len, H, std::max<int64_t>(S, 1)});
  if (batch * seq_len == 0) return;
  const PrepareParams p{.proj = proj.f32(),
                        .dt_bias = g.dt_bias.f32(),
                        .B_bias = g.B_bias.f32(),
                        .C_bias = g.C_bias.f32(),
                        .B_norm_weight = g.B_norm_weight.f32(),
                        .C_norm_weight = g.C_norm_weight.f32(),
                        .q = a.q.f32(),
                        .k = a.k.f32(),
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
                        .A_floor = g.A_floor,
                        .half_split = g.half_split_pairs,
                        .rope = g.rope};
  cudaStream_t stream = mamba::cuda::stream();
  mamba3_scalars_kernel<<<mamba::cuda::grid_for(batch * seq_len * H), 256, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  if (S > 0) {
    mamba3_angle_kernel<<<mamba::cuda::grid_for(batch * H * S, 128), 128, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH();
  }
  const int64_t blocks = batch * seq_len * R * H;
  mamba3_qk_kernel<<<static_cast<unsigned int>(blocks), threads_for(N), 2 * N * sizeof(float), stream>>>(p);
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
  mamba3_combine_kernel<<<static_cast<unsigned int>(batch * seq_len * H), threads_for(P), 0,
                          mamba::cuda::stream()>>>(p);
  CUDA_CHECK_LAUNCH();
  return o;
}

}  // namespace mamba::ops
