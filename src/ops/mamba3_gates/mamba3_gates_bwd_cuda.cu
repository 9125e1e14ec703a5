// Backward of the Mamba-3 gates on CUDA (SPEC §3.3, §3.4 output): the gradients of
// mamba3_gates_bwd.cpp, whole sequence from a zero angle state. Parameter gradients are written per
// token (or per token and group row) into scratch and summed over tokens in double by a two-stage
// deterministic reduction (backend/cuda/reduce.h), so the result does not depend on scheduling.
// prepare: (1) the angles φ re-run forward, a block scan over the tokens per (batch, head); (2) one
// block per (token, rank, group) takes dq/dk of the group's heads back through the rotation (dφ per
// rank) and the biases, sums them onto the normalized B/C row and goes back through its RMSNorm;
// (3) per (token, head) the A·Δ, λ columns and Δ's gradient so far; (4) per (batch, head) the
// reverse cumsum of dφ (in double) (the gradient of each increment ω_t·Δ_t); (5) per token the angle columns
// and Δ through the softplus into dd_dt; (6) the parameter sums.
// combine: one block per (token, head), as the forward, then the parameter sums.
#include <initializer_list>
#include <numbers>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "backend/cuda/reduce.h"
#include "core/error.h"
#include "ops/mamba3_gates/mamba3_angle_scan.cuh"
#include "ops/mamba3_gates/mamba3_gates.h"

namespace mamba::ops {

namespace {

constexpr float kPi = std::numbers::pi_v<float>;

__device__ __forceinline__ float softplus_grad_f(float v) {
  return v <= 20.0f ? mamba::cuda::sigmoid_f(v) : 1.0f;
}
__device__ __forceinline__ float silu_grad_f(float v) {
  const float s = mamba::cuda::sigmoid_f(v);
  return s * (1.0f + v * (1.0f - s));
}

struct PrepareBwdParams {
  const float* proj;  // [batch, seq_len, width]  [z | x | B | C | dd_dt | dd_A | trap | angles]
  const float *dt_bias, *B_bias, *C_bias, *B_norm_weight, *C_norm_weight;
  const float *dq, *dk, *dadt, *ddt, *dtrap;  // the scan-input gradients
  float* dproj;                               // [batch, seq_len, width]
  float* phi;                                 // [batch, seq_len, n_heads, S] scratch: φ after each token
  float* dphi;                                // [batch, seq_len, rank, n_heads, S] scratch: dφ per rank
  float* dinc;                                // [batch, seq_len, n_heads, S] scratch: Σ_{s ≥ t} dφ_s
  float* ddt_total;            // [batch, seq_len, n_heads] scratch: Δ's gradient before the angle term
  float *dk_tilde, *dq_tilde;  // [batch, seq_len, n_heads, rank, d_state]: bias gradient per token
  float *dBw, *dCw;            // [batch, seq_len, rank, n_groups, d_state]: norm-weight grad per row
  int64_t batch, seq_len, width, n_heads, rank, n_groups, d_state, n_angles;
  int64_t off_b, off_c, off_dt;
  float A_floor;
  bool half_split;
  Mamba3Rope rope;
};

__device__ float delta_of(const PrepareBwdParams& p, const float* row, int64_t h) {
  return mamba::cuda::softplus_f(row[p.off_dt + h] + p.dt_bias[h]);
}

__device__ float omega_of(const PrepareBwdParams& p, const float* row, int64_t i) {
  return p.rope == Mamba3Rope::data_independent
             ? powf(10000.0f, -static_cast<float>(i) / static_cast<float>(p.n_angles))
             : kPi * tanhf(row[p.off_dt + 3 * p.n_heads + i]);
}

// (1) φ_t = (φ_{t−1} + ω_t·scale_t) mod 2π from φ_{−1} = 0, as the forward: a block per (batch,
// head, up to 32 angles) scanning the tokens (mamba3_angle_scan.cuh).
__global__ void __launch_bounds__(kAngleThreads) angles_kernel(PrepareBwdParams p, AngleTile tile) {
  const int64_t H = p.n_heads, S = p.n_angles, L = p.seq_len;
  const int64_t bh = blockIdx.x / tile.angle_groups, b = bh / H, h = bh % H;
  const int64_t a0 = (blockIdx.x % tile.angle_groups) * tile.sa;
  angle_scan(
      L, S, a0, tile, false,
      [&](int64_t t, int64_t i) {
        const float* row = p.proj + (b * L + t) * p.width;
        const float scale = p.rope == Mamba3Rope::data_dependent ? delta_of(p, row, h) : 1.0f;
        return static_cast<double>(omega_of(p, row, i)) * scale;
      },
      [&](int64_t t, int64_t i, double sum) { p.phi[((b * L + t) * H + h) * S + i] = wrap_angle(sum); });
}

// Pair of state entry n under the rotation: index i of its angle (−1 when not rotated), its role
// (0: first of the pair) and both entries of the pair.
struct Pair {
  int64_t i, role, i0, i1;
};

__device__ Pair pair_of(const PrepareBwdParams& p, int64_t n) {
  const int64_t half = p.d_state / 2, S = p.n_angles;
  Pair q{-1, 0, 0, 0};
  if (p.rope == Mamba3Rope::none) return q;
  if (p.half_split) {
    if (n < S)
      q.i = n;
    else if (n >= half && n < half + S)
      q.i = n - half, q.role = 1;
  } else if (n / 2 < S) {
    q.i = n / 2, q.role = n % 2;
  }
  if (q.i >= 0) {
    q.i0 = p.half_split ? q.i : 2 * q.i;
    q.i1 = p.half_split ? q.i + half : 2 * q.i + 1;
  }
  return q;
}

// (2) One block per (batch·token, rank, group), one thread per state entry.
__global__ void qk_bwd_kernel(PrepareBwdParams p) {
  extern __shared__ float smem[];  // [4, d_state]: k̃, q̃ (unrotated, biased), then dk, dq
  __shared__ float scratch[32];
  const int64_t H = p.n_heads, R = p.rank, G = p.n_groups, N = p.d_state, S = p.n_angles;
  const int64_t g = blockIdx.x % G, r = (blockIdx.x / G) % R, bt = blockIdx.x / (G * R);
  const int64_t hpg = H / G, n = threadIdx.x;
  const bool active = n < N;
  const float* row = p.proj + bt * p.width;
  float* drow = p.dproj + bt * p.width;
  const int64_t col = (r * G + g) * N + n;
  const float bv = active ? row[p.off_b + col] : 0.0f, cv = active ? row[p.off_c + col] : 0.0f;
  const float wb = active ? p.B_norm_weight[n] : 0.0f, wc = active ? p.C_norm_weight[n] : 0.0f;
  const float rstd_b = 1.0f / sqrtf(mamba::cuda::block_sum(bv * bv, scratch) / static_cast<float>(N) + 1e-5f);
  const float rstd_c = 1.0f / sqrtf(mamba::cuda::block_sum(cv * cv, scratch) / static_cast<float>(N) + 1e-5f);
  float *kt = smem, *qt = smem + N, *gk = smem + 2 * N, *gq = smem + 3 * N;
  const Pair pr = active ? pair_of(p, n) : Pair{-1, 0, 0, 0};
  float dbn = 0.0f, dcn = 0.0f;  // gradient of the normalized B / C entry, summed over the heads
  for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h) {
    const int64_t at = ((bt * R + r) * H + h) * N + n, hr = (h * R + r) * N + n;
    __syncthreads();  // the previous head's values are read
    if (active) {
      kt[n] = bv * rstd_b * wb + p.B_bias[hr];
      qt[n] = cv * rstd_c * wc + p.C_bias[hr];
      gk[n] = p.dk[at];
      gq[n] = p.dq[at];
    }
    __syncthreads();
    if (!active) continue;
    float grad_k = gk[n], grad_q = gq[n];
    if (pr.i >= 0) {
      // out0 = a·cs − b·sn, out1 = a·sn + b·cs: back to (a, b) and to φ.
      const float ph = p.phi[(bt * H + h) * S + pr.i], cs = cosf(ph), sn = sinf(ph);
      const float dk0 = gk[pr.i0], dk1 = gk[pr.i1], dq0 = gq[pr.i0], dq1 = gq[pr.i1];
      grad_k = pr.role == 0 ? dk0 * cs + dk1 * sn : -dk0 * sn + dk1 * cs;
      grad_q = pr.role == 0 ? dq0 * cs + dq1 * sn : -dq0 * sn + dq1 * cs;
      if (pr.role == 0) {
        const float ka = kt[pr.i0], kb = kt[pr.i1], qa = qt[pr.i0], qb = qt[pr.i1];
        p.dphi[((bt * R + r) * H + h) * S + pr.i] = dk0 * (-ka * sn - kb * cs) + dk1 * (ka * cs - kb * sn) +
                                                    dq0 * (-qa * sn - qb * cs) + dq1 * (qa * cs - qb * sn);
      }
    }
    p.dk_tilde[bt * H * R * N + hr] = grad_k;  // laid out as the bias, [head, rank, d_state]
    p.dq_tilde[bt * H * R * N + hr] = grad_q;
    dbn += grad_k;
    dcn += grad_q;
  }
  // RMSNorm backward of the B and C rows: dx = rstd·(dy·w − x·rstd·mean(dy·w·x·rstd)).
  const float mb = mamba::cuda::block_sum(dbn * wb * bv * rstd_b, scratch) / static_cast<float>(N);
  const float mc = mamba::cuda::block_sum(dcn * wc * cv * rstd_c, scratch) / static_cast<float>(N);
  if (!active) return;
  drow[p.off_b + col] = rstd_b * (dbn * wb - bv * rstd_b * mb);
  drow[p.off_c + col] = rstd_c * (dcn * wc - cv * rstd_c * mc);
  const int64_t w_at = ((bt * R + r) * G + g) * N + n;
  p.dBw[w_at] = dbn * bv * rstd_b;
  p.dCw[w_at] = dcn * cv * rstd_c;
}

// (3) Per (batch·token, head): dd_A and trap columns; Δ's gradient before the angle term.
__global__ void scalars_bwd_kernel(PrepareBwdParams p) {
  const int64_t H = p.n_heads;
  MAMBA_GRID_STRIDE_LOOP(i, p.batch * p.seq_len * H) {
    const int64_t bt = i / H, h = i % H;
    const float* row = p.proj + bt * p.width;
    float* drow = p.dproj + bt * p.width;
    // A = −max(f(dd_A), A_floor), f(a) = max(a, 0) + 1/(1 − min(a, 0)); adt = Δ·A.
    const float dd_a = row[p.off_dt + H + h], dt = delta_of(p, row, h);
    const float f = fmaxf(dd_a, 0.0f) + 1.0f / (1.0f - fminf(dd_a, 0.0f));
    const float df = dd_a >= 0.0f ? 1.0f : 1.0f / ((1.0f - dd_a) * (1.0f - dd_a));
    const float A = -fmaxf(f, p.A_floor);
    drow[p.off_dt + H + h] = f > p.A_floor ? -p.dadt[i] * dt * df : 0.0f;
    p.ddt_total[i] = p.ddt[i] + p.dadt[i] * A;
    const float lambda = mamba::cuda::sigmoid_f(row[p.off_dt + 2 * H + h]);
    drow[p.off_dt + 2 * H + h] = p.dtrap[i] * lambda * (1.0f - lambda);
  }
}

// (4) dinc_t = Σ_{s ≥ t} Σ_r dφ_s, per (batch, head, angle): the same block scan, from the last token.
__global__ void __launch_bounds__(kAngleThreads) angle_cumsum_kernel(PrepareBwdParams p, AngleTile tile) {
  const int64_t H = p.n_heads, S = p.n_angles, R = p.rank, L = p.seq_len;
  const int64_t bh = blockIdx.x / tile.angle_groups, b = bh / H, h = bh % H;
  const int64_t a0 = (blockIdx.x % tile.angle_groups) * tile.sa;
  angle_scan(
      L, S, a0, tile, true,
      [&](int64_t t, int64_t i) {
        double d = 0.0;
        for (int64_t r = 0; r < R; ++r) d += p.dphi[(((b * L + t) * R + r) * H + h) * S + i];
        return d;
      },
      [&](int64_t t, int64_t i, double sum) {
        p.dinc[((b * L + t) * H + h) * S + i] = static_cast<float>(sum);
      });
}

// (5) Per (batch·token, column): angle column i (data-dependent rotation only: ω = π·tanh(a), scaled
// by every head's Δ), or dd_dt of head h (Δ's gradient with the angle term, through the softplus).
__global__ void angle_cols_kernel(PrepareBwdParams p, bool with_angles) {
  const int64_t H = p.n_heads, S = p.n_angles;
  const bool dd = with_angles && p.rope == Mamba3Rope::data_dependent;
  MAMBA_GRID_STRIDE_LOOP(idx, p.batch * p.seq_len * (S + H)) {
    const int64_t bt = idx / (S + H), j = idx % (S + H);
    const float* row = p.proj + bt * p.width;
    float* drow = p.dproj + bt * p.width;
    const float* dinc = p.dinc + bt * H * S;
    if (j < S) {
      float domega = 0.0f;
      if (dd) {
        for (int64_t h = 0; h < H; ++h) domega += dinc[h * S + j] * delta_of(p, row, h);
        const float th = tanhf(row[p.off_dt + 3 * H + j]);
        domega *= kPi * (1.0f - th * th);
      }
      drow[p.off_dt + 3 * H + j] = domega;
    } else {
      const int64_t h = j - S;
      float ddt = p.ddt_total[bt * H + h];
      if (dd)
        for (int64_t i = 0; i < S; ++i) ddt += dinc[h * S + i] * omega_of(p, row, i);
      drow[p.off_dt + h] = ddt * softplus_grad_f(row[p.off_dt + h] + p.dt_bias[h]);
    }
  }
}

// dst[n] += Σ over `items` rows of src[item·stride + n], in double: two-stage and deterministic
// (backend/cuda/reduce.h), so tens of thousands of tokens are summed by many blocks, not one
// thread per column.
void sum_rows(const float* src, int64_t items, int64_t stride, int64_t n, float* dst, cudaStream_t stream) {
  mamba::cuda::column_sum_add(src, items, stride, n, dst, stream);
}

unsigned int threads_for(int64_t n) {
  return static_cast<unsigned int>((n + 31) / 32 * 32);
}

struct CombineBwdParams {
  const float *dout, *y, *z, *norm_weight, *mimo_z, *mimo_o;  // the last three may be null
  float *dy, *dz;
  float* dnw_part;             // [batch·seq_len, n_heads·head_dim] (norm only)
  float *dmz_part, *dmo_part;  // [batch·seq_len, n_heads, rank, head_dim] (MIMO only)
  int64_t batch, seq_len, rank, n_heads, head_dim, z_batch_stride, z_seq_stride;
};

// One block per (batch·token, head), one thread per head_dim entry (as mamba3_combine_kernel).
__global__ void combine_bwd_kernel(CombineBwdParams p) {
  __shared__ float scratch[32];
  const int64_t H = p.n_heads, P = p.head_dim, R = p.rank;
  const int64_t h = blockIdx.x % H, bt = blockIdx.x / H, pi = threadIdx.x;
  const bool active = pi < P;
  const float* zr = p.z + (bt / p.seq_len) * p.z_batch_stride + (bt % p.seq_len) * p.z_seq_stride;
  const int64_t hp = h * P + pi;
  const float d_out = active ? p.dout[bt * H * P + hp] : 0.0f, zv = active ? zr[hp] : 0.0f;
  const float w = p.norm_weight && active ? p.norm_weight[hp] : 1.0f;
  float dz = 0.0f, dnw = 0.0f;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t hrp = (h * R + r) * P + pi, yi = ((bt * R + r) * H + h) * P + pi;
    const float yv = active ? p.y[yi] : 0.0f;
    float rstd = 1.0f;
    if (p.norm_weight)
      rstd = 1.0f / sqrtf(mamba::cuda::block_sum(yv * yv, scratch) / static_cast<float>(P) + 1e-5f);
    const float nv = yv * rstd, pre = nv * w;
    const float mz = p.mimo_z && active ? p.mimo_z[hrp] : 1.0f, u = zv * mz, gate = mamba::cuda::silu_f(u);
    const float dv = d_out * (p.mimo_o && active ? p.mimo_o[hrp] : 1.0f);
    const float du = dv * pre * silu_grad_f(u);
    dz += du * mz;
    const float dpre = dv * gate, dn = dpre * w;
    if (p.mimo_o && active) {
      p.dmo_part[bt * H * R * P + hrp] = d_out * pre * gate;
      p.dmz_part[bt * H * R * P + hrp] = du * zv;
    }
    if (p.norm_weight) {
      dnw += dpre * nv;
      const float mean = mamba::cuda::block_sum(dn * nv, scratch) / static_cast<float>(P);
      if (active) p.dy[yi] = rstd * (dn - yv * rstd * mean);
    } else if (active) {
      p.dy[yi] = dn;
    }
  }
  if (!active) return;
  p.dz[bt * H * P + hp] = dz;
  if (p.norm_weight) p.dnw_part[bt * H * P + hp] = dnw;
}

}  // namespace

void mamba3_prepare_bwd_cuda(const Tensor& proj, const Mamba3Gates& g, const Mamba3ScanGrads& ds,
                             Tensor& dproj, Mamba3Gates& grads) {
  mamba::cuda::check_cuda_tensor(proj, "mamba3_prepare_bwd: proj");
  mamba::cuda::check_cuda_tensor(dproj, "mamba3_prepare_bwd: dproj");
  for (const Tensor* t : std::initializer_list<const Tensor*>{
           &g.dt_bias, &g.B_bias, &g.C_bias, &g.B_norm_weight, &g.C_norm_weight, &grads.dt_bias,
           &grads.B_bias, &grads.C_bias, &grads.B_norm_weight, &grads.C_norm_weight})
    mamba::cuda::check_cuda_tensor(*t, "mamba3_prepare_bwd: gate parameter or gradient");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&ds.dq, &ds.dk, &ds.dadt, &ds.ddt, &ds.dtrap}) {
    mamba::cuda::check_cuda_tensor(*t, "mamba3_prepare_bwd: scan gradient");
    MAMBA_CHECK(t->is_contiguous() && t->dtype() == DType::f32);
  }
  MAMBA_CHECK(proj.is_contiguous() && proj.dim() == 3 && dproj.is_contiguous() &&
              dproj.shape() == proj.shape());
  const int64_t batch = proj.size(0), seq_len = proj.size(1), width = proj.size(2);
  const int64_t H = g.n_heads, R = g.rank, G = g.n_groups, N = g.d_state, S = g.n_rope_angles;
  const Mamba3Layout cols = g.layout();
  const int64_t off_b = cols.b, off_c = cols.c, off_dt = cols.dt;
  MAMBA_CHECK(width == cols.width && H % G == 0);
  MAMBA_CHECK(ds.dk.shape() == (Shape{batch, seq_len, R, H, N}) && ds.dq.shape() == ds.dk.shape());
  MAMBA_CHECK(ds.dadt.shape() == (Shape{batch, seq_len, H}) && ds.ddt.shape() == ds.dadt.shape() &&
              ds.dtrap.shape() == ds.dadt.shape());
  MAMBA_CHECK(N <= 1024, "mamba3_prepare_bwd (CUDA): d_state " << N << " > 1024");
  MAMBA_CHECK(grads.dt_bias.numel() == H && grads.B_bias.numel() == H * R * N &&
              grads.C_bias.numel() == H * R * N && grads.B_norm_weight.numel() == N &&
              grads.C_norm_weight.numel() == N);
  if (batch * seq_len == 0) return;
  auto dev = [](const Shape& s) { return Tensor::empty(s, DType::f32, Device::cuda); };
  const int64_t S1 = S > 0 ? S : 1;
  const Tensor phi = dev({batch, seq_len, H, S1}),
               dphi = Tensor::zeros({batch, seq_len, R, H, S1}, DType::f32, Device::cuda);
  const Tensor dinc = Tensor::zeros({batch, seq_len, H, S1}, DType::f32, Device::cuda);
  const Tensor ddt_total = dev({batch, seq_len, H});
  const Tensor dk_tilde = dev({batch, seq_len, H, R, N}), dq_tilde = dev({batch, seq_len, H, R, N});
  const Tensor dBw = dev({batch, seq_len, R, G, N}), dCw = dev({batch, seq_len, R, G, N});
  const PrepareBwdParams p{.proj = proj.f32(),
                           .dt_bias = g.dt_bias.f32(),
                           .B_bias = g.B_bias.f32(),
                           .C_bias = g.C_bias.f32(),
                           .B_norm_weight = g.B_norm_weight.f32(),
                           .C_norm_weight = g.C_norm_weight.f32(),
                           .dq = ds.dq.f32(),
                           .dk = ds.dk.f32(),
                           .dadt = ds.dadt.f32(),
                           .ddt = ds.ddt.f32(),
                           .dtrap = ds.dtrap.f32(),
                           .dproj = dproj.f32(),
                           .phi = phi.f32(),
                           .dphi = dphi.f32(),
                           .dinc = dinc.f32(),
                           .ddt_total = ddt_total.f32(),
                           .dk_tilde = dk_tilde.f32(),
                           .dq_tilde = dq_tilde.f32(),
                           .dBw = dBw.f32(),
                           .dCw = dCw.f32(),
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
  const bool rotate = S > 0 && g.rope != Mamba3Rope::none;
  const AngleTile tile = angle_tile(S, seq_len);
  const unsigned int angle_blocks = static_cast<unsigned int>(batch * H * tile.angle_groups);
  if (rotate) {
    angles_kernel<<<angle_blocks, kAngleThreads, 0, stream>>>(p, tile);
    CUDA_CHECK_LAUNCH();
  }
  qk_bwd_kernel<<<static_cast<unsigned int>(batch * seq_len * R * G), threads_for(N), 4 * N * sizeof(float),
                  stream>>>(p);
  CUDA_CHECK_LAUNCH();
  scalars_bwd_kernel<<<mamba::cuda::grid_for(batch * seq_len * H), 256, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  if (rotate) {
    angle_cumsum_kernel<<<angle_blocks, kAngleThreads, 0, stream>>>(p, tile);
    CUDA_CHECK_LAUNCH();
  }
  angle_cols_kernel<<<mamba::cuda::grid_for(batch * seq_len * (S + H)), 256, 0, stream>>>(p, rotate);
  CUDA_CHECK_LAUNCH();
  const int64_t BL = batch * seq_len;
  sum_rows(dproj.f32() + off_dt, BL, width, H, grads.dt_bias.f32(), stream);
  sum_rows(dk_tilde.f32(), BL, H * R * N, H * R * N, grads.B_bias.f32(), stream);
  sum_rows(dq_tilde.f32(), BL, H * R * N, H * R * N, grads.C_bias.f32(), stream);
  sum_rows(dBw.f32(), BL * R * G, N, N, grads.B_norm_weight.f32(), stream);
  sum_rows(dCw.f32(), BL * R * G, N, N, grads.C_norm_weight.f32(), stream);
}

Tensor mamba3_combine_bwd_cuda(const Tensor& dout_in, const Tensor& y, const Tensor& z,
                               const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o,
                               Tensor& dz, Tensor& dnorm_weight, Tensor& dmimo_z, Tensor& dmimo_o) {
  mamba::cuda::check_cuda_tensor(y, "mamba3_combine_bwd: y");
  mamba::cuda::check_cuda_tensor(z, "mamba3_combine_bwd: z");
  mamba::cuda::check_cuda_tensor(dout_in, "mamba3_combine_bwd: dout");
  MAMBA_CHECK(y.is_contiguous() && y.dim() == 5 && z.dim() == 3 && z.stride(2) == 1);
  const Tensor dout = dout_in.contiguous();
  const int64_t batch = y.size(0), seq_len = y.size(1), R = y.size(2), H = y.size(3), P = y.size(4);
  MAMBA_CHECK(dout.shape() == (Shape{batch, seq_len, H * P}) && z.size(0) == batch && z.size(1) == seq_len &&
              z.size(2) == H * P);
  MAMBA_CHECK(P <= 1024, "mamba3_combine_bwd (CUDA): head_dim " << P << " > 1024");
  const bool mimo = mimo_o.defined(), outproj_norm = norm_weight.defined();
  MAMBA_CHECK(mimo || R == 1, "mamba3_combine_bwd: rank " << R << " without mimo_o");
  MAMBA_CHECK(!mimo || (mimo_z.defined() && mimo_z.numel() == H * R * P && mimo_o.numel() == H * R * P &&
                        dmimo_z.numel() == H * R * P && dmimo_o.numel() == H * R * P));
  MAMBA_CHECK(!outproj_norm || (norm_weight.numel() == H * P && dnorm_weight.numel() == H * P));
  for (const Tensor* t : std::initializer_list<const Tensor*>{&norm_weight, &mimo_z, &mimo_o, &dnorm_weight,
                                                              &dmimo_z, &dmimo_o})
    if (t->defined()) mamba::cuda::check_cuda_tensor(*t, "mamba3_combine_bwd: parameter or gradient");
  auto dev = [](const Shape& s) { return Tensor::empty(s, DType::f32, Device::cuda); };
  Tensor dy = dev(y.shape());
  dz = Tensor::zeros({batch, seq_len, H * P}, DType::f32, Device::cuda);
  const int64_t BL = batch * seq_len;
  if (BL * H == 0) return dy;
  const Tensor dnw_part = outproj_norm ? dev({BL, H * P}) : Tensor();
  const Tensor dmz_part = mimo ? dev({BL, H, R, P}) : Tensor(),
               dmo_part = mimo ? dev({BL, H, R, P}) : Tensor();
  const CombineBwdParams p{dout.f32(),
                           y.f32(),
                           z.f32(),
                           outproj_norm ? norm_weight.f32() : nullptr,
                           mimo ? mimo_z.f32() : nullptr,
                           mimo ? mimo_o.f32() : nullptr,
                           dy.f32(),
                           dz.f32(),
                           outproj_norm ? dnw_part.f32() : nullptr,
                           mimo ? dmz_part.f32() : nullptr,
                           mimo ? dmo_part.f32() : nullptr,
                           batch,
                           seq_len,
                           R,
                           H,
                           P,
                           z.stride(0),
                           z.stride(1)};
  cudaStream_t stream = mamba::cuda::stream();
  combine_bwd_kernel<<<static_cast<unsigned int>(BL * H), threads_for(P), 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
  if (outproj_norm) sum_rows(dnw_part.f32(), BL, H * P, H * P, dnorm_weight.f32(), stream);
  if (mimo) {
    sum_rows(dmz_part.f32(), BL, H * R * P, H * R * P, dmimo_z.f32(), stream);
    sum_rows(dmo_part.f32(), BL, H * R * P, H * R * P, dmimo_o.f32(), stream);
  }
  return dy;
}

}  // namespace mamba::ops
