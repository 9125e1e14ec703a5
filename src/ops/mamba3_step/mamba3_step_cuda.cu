// Fused Mamba-3 decode step: one block per (head, batch row) does the whole token — gate scalars,
// angle advance, RMS-normed biased rotated q/k (in shared memory with the previous key), the
// state update, y = S·q + D·v and the output stage — so a layer's step is one launch instead of
// six. The state streams through once as 16-byte cache-streaming loads and stores (each warp 4
// head_dim rows, each lane 4 consecutive d_state entries per row; y a warp sum). The arithmetic
// is that of mamba3_gates_cuda.cu and mamba3_scan_cuda.cu expression by expression; only the
// order of the RMS and S·q sums differs.
#include <cooperative_groups.h>

#include <initializer_list>
#include <numbers>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/mamba3_step/mamba3_step.h"

namespace mamba::ops {

// The streaming variant (mamba3_step_stream_cuda.cu): the prefill's prepare, a Mamba-2-shaped state
// update and a key store, taken at large batches (SISO without the head norm) or by the plan.
bool mamba3_step_stream_applies(const KernelPlan& plan, int64_t batch, const Mamba3Gates& g,
                                const Mamba3StepParams& w);
void mamba3_step_stream_cuda(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                             Tensor& angle, Mamba3ScanState& state, Tensor& o);

namespace {

constexpr float kPi = std::numbers::pi_v<float>;
constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;
constexpr int kThreads = 256;
constexpr int kRowsPerWarp = 4;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxRank = 8;
constexpr size_t kMaxSmem = 48 * 1024;

struct StepParams {
  const float* proj;  // [batch, width] rows [z | x | B | C | dd_dt | dd_A | trap | angles]
  int64_t proj_stride;
  const float *dt_bias, *B_bias, *C_bias, *B_norm_weight, *C_norm_weight, *D;
  const float *mimo_x, *mimo_z, *mimo_o, *norm_weight;  // null when undefined
  float *angle, *ssm, *k_prev, *v_prev;                 // state, updated in place
  float* o;                                             // [batch, n_heads·head_dim]
  int n_heads, head_dim, d_state, n_groups, rank, n_angles;
  int64_t off_b, off_c, off_dt;
  float A_floor;
  bool half_split;
  Mamba3Rope rope;
};

__device__ __forceinline__ float4 ld4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}

// What a warp needs to update rows of one head's state (shared-memory vectors and gate scalars).
struct RowCoefs {
  float alpha, beta, gamma, D;
  const float *xp_s, *x_s, *k_s, *q_s, *kp_s;  // previous x, x, key, query, previous key
  float* y_s;                                  // [R][P] outputs
  const float* mimo_x;                         // [R][P] of this head, null for SISO
  int P, N, R;
};

// Rows p0..p0+3 (those < P) at columns n..n+3: s holds their old values; writes the new ones back
// (streaming stores) and adds each row's S·q_r partial sum into acc.
template <int kRanks>
__device__ __forceinline__ void update_rows(const RowCoefs& c, float* state, int p0, int n,
                                            const float4 (&s)[kRowsPerWarp],
                                            float (&acc)[kRowsPerWarp][kRanks]) {
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int prow = p0 + i;
    if (prow >= c.P) continue;
    float4 v = s[i];
    v.x *= c.alpha, v.y *= c.alpha, v.z *= c.alpha, v.w *= c.alpha;
#pragma unroll
    for (int r = 0; r < kRanks; ++r) {
      if (r >= c.R) break;
      const float scale = c.mimo_x ? c.mimo_x[r * c.P + prow] : 1.0f;
      const float cb = c.beta * c.xp_s[prow] * scale, cn = c.gamma * c.x_s[prow] * scale;
      const float4 kb = ld4(c.kp_s + r * c.N + n), kn = ld4(c.k_s + r * c.N + n);
      v.x += cb * kb.x + cn * kn.x;
      v.y += cb * kb.y + cn * kn.y;
      v.z += cb * kb.z + cn * kn.z;
      v.w += cb * kb.w + cn * kn.w;
    }
    __stcs(reinterpret_cast<float4*>(state + int64_t(prow) * c.N + n), v);
#pragma unroll
    for (int r = 0; r < kRanks; ++r) {
      if (r >= c.R) break;
      const float4 q = ld4(c.q_s + r * c.N + n);
      acc[i][r] += v.x * q.x + v.y * q.y + v.z * q.z + v.w * q.w;
    }
  }
}

// y_r[p] = (the warp's sum of acc) + D·v_r[p] for rows p0..p0+3, into y_s.
template <int kRanks>
__device__ __forceinline__ void finish_rows(const RowCoefs& c, int p0, int lane,
                                            float (&acc)[kRowsPerWarp][kRanks]) {
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
#pragma unroll
    for (int r = 0; r < kRanks; ++r) {
      if (r >= c.R) break;
      const float sum = mamba::cuda::warp_sum(acc[i][r]);
      const int prow = p0 + i;
      if (lane == 0 && prow < c.P) {
        const float scale = c.mimo_x ? c.mimo_x[r * c.P + prow] : 1.0f;
        c.y_s[r * c.P + prow] = sum + c.D * c.x_s[prow] * scale;
      }
      acc[i][r] = 0.0f;
    }
  }
}

// A barrier over the cluster of blocks sharing a head (kSplit > 1, sm_90+), else over the block.
template <int kSplit>
__device__ __forceinline__ void head_barrier() {
  if constexpr (kSplit > 1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cooperative_groups::this_cluster().sync();
#else
    __trap();  // never launched before sm_90 (mamba3_step_cuda)
#endif
  } else {
    __syncthreads();
  }
}

// kRanks: ranks compiled in (1 for SISO, kMaxRank for MIMO); p.rank <= kRanks. kPasses > 0: the
// shape d_state 128, head_dim kSplit·32·kPasses, whose state slice (kPasses·4 float4 per thread) is
// loaded into registers first, so its DRAM latency overlaps the gate prologue; 0: any shape, loaded
// in the update loop. kSplit > 1 (small batches, sm_90+): a cluster of kSplit blocks shares a head,
// each updating head_dim/kSplit rows of its state — more SMs stream the state — and computing the
// gates and q/k itself; they read the old angle, key and x before a cluster barrier, after which
// the first block writes the new ones, and exchange the head norm's partial sums through
// distributed shared memory.
template <int kRanks, int kPasses, int kSplit>
// SISO is held to 64 registers a thread, 4 blocks per SM: at large batches the blocks' serial
// gate prologues then overlap more of each other's state streaming.
__global__ void __launch_bounds__(kThreads, kRanks == 1 && kPasses <= 2 ? 4 : 1)
    mamba3_step_kernel(const StepParams p) {
  extern __shared__ float4 smem4[];
  __shared__ float scratch[32];
  __shared__ float ss_part[kRanks];  // this block's Σ y² per rank (head norm with kSplit > 1)
  const int H = p.n_heads, P = p.head_dim, N = p.d_state, R = p.rank, S = p.n_angles, G = p.n_groups;
  const int h = blockIdx.x / kSplit, split = blockIdx.x % kSplit, b = blockIdx.y, tid = threadIdx.x,
            nt = kThreads;
  const int rows = P / kSplit, row0 = split * rows;  // this block's head_dim rows
  const int lane = tid & 31, warp = tid >> 5;
  const int g = h / (H / G);
  const int64_t bh = int64_t(b) * H + h;
  float* k_s = reinterpret_cast<float*>(smem4);  // [R][N] this token's key
  float* q_s = k_s + R * N;                      // [R][N] query
  float* kp_s = q_s + R * N;                     // [R][N] previous key
  float* x_s = kp_s + R * N;                     // [P]    x
  float* xp_s = x_s + P;                         // [P]    previous x
  float* y_s = xp_s + P;                         // [R][P] scan output per rank
  float* phi_s = y_s + R * P;                    // [S]    angle after this token
  float* ang_s = phi_s + S;                      // [S]    angle inputs of this token
  // The state is written only by this layer's previous step, long finished: its loads may start
  // before the wait for the in_proj kernel (a programmatic dependent launch).
  float* state = p.ssm + bh * P * N;
  float4 pre[kPasses > 0 ? kPasses : 1][kRowsPerWarp];
  if constexpr (kPasses > 0) {
#pragma unroll
    for (int j = 0; j < kPasses; ++j)
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i)
        pre[j][i] = __ldcs(reinterpret_cast<const float4*>(
            state + int64_t(row0 + (warp + j * kWarps) * kRowsPerWarp + i) * N + 4 * lane));
  } else {
    mamba::cuda::prefetch_l2(state, int64_t(P) * N * sizeof(float));
  }
  mamba::cuda::grid_dependency_wait();
  mamba::cuda::allow_dependents();
  const float* row = p.proj + b * p.proj_stride;

  // Every global read of the gate prologue is issued first, as predicated loads in one pass, so
  // their latencies overlap: the gate scalars, the old angle and the angle inputs, x and the
  // previous x, the previous key, the raw B/C rows (staged in k_s/q_s) and, for this thread's
  // first B/C entry, its norm weights and biases.
  const float dd_a = row[p.off_dt + H + h], dd_dt = row[p.off_dt + h], dt_bias = p.dt_bias[h];
  const float trap = row[p.off_dt + 2 * H + h], D = p.D[h];
  const int first_n = tid % N, first_r = tid / N;
  const bool has_first = tid < R * N;
  const float bw0 = has_first ? p.B_norm_weight[first_n] : 0.0f;
  const float cw0 = has_first ? p.C_norm_weight[first_n] : 0.0f;
  const float bb0 = has_first ? p.B_bias[(h * R + first_r) * N + first_n] : 0.0f;
  const float cb0 = has_first ? p.C_bias[(h * R + first_r) * N + first_n] : 0.0f;
  const int items = max(R * N, max(P, S));
  for (int i = tid; i < items; i += nt) {
    const int r = i / N, n = i % N;
    const bool is_angle = i < S, is_row = i < P, is_key = i < R * N;
    const float angle_old = is_angle ? p.angle[bh * S + i] : 0.0f;
    const float angle_in = is_angle ? row[p.off_dt + 3 * H + i] : 0.0f;
    const float x = is_row ? row[int64_t(H) * P + h * P + i] : 0.0f;
    const float x_prev = is_row ? p.v_prev[bh * P + i] : 0.0f;
    const float k_prev = is_key ? p.k_prev[((int64_t(b) * R + r) * H + h) * N + n] : 0.0f;
    const float b_raw = is_key ? row[p.off_b + (r * G + g) * N + n] : 0.0f;
    const float c_raw = is_key ? row[p.off_c + (r * G + g) * N + n] : 0.0f;
    if (is_angle) phi_s[i] = angle_old, ang_s[i] = angle_in;
    if (is_row) x_s[i] = x, xp_s[i] = x_prev;
    if (is_key) kp_s[i] = k_prev, k_s[i] = b_raw, q_s[i] = c_raw;
  }
  __syncthreads();

  // A = −max(f(dd_A), A_floor), Δ = softplus(dd_dt + dt_bias), λ = sigmoid(trap) (§3.3 items 1-3).
  const float A = -fmaxf(fmaxf(dd_a, 0.0f) + 1.0f / (1.0f - fminf(dd_a, 0.0f)), p.A_floor);
  const float dt = mamba::cuda::softplus_f(dd_dt + dt_bias);
  const float adt = dt * A;
  const float lambda = mamba::cuda::sigmoid_f(trap);

  // φ = (φ + ω·Δ) mod 2π per angle.
  for (int a = tid; a < S; a += nt) {
    const float fixed = powf(10000.0f, -static_cast<float>(a) / static_cast<float>(S));
    const float omega = p.rope == Mamba3Rope::data_independent ? fixed : kPi * tanhf(ang_s[a]);
    const float scale = p.rope == Mamba3Rope::data_dependent ? dt : 1.0f;
    float ph = phi_s[a];
    ph += omega * scale;
    ph -= kTwoPi * floorf(ph / kTwoPi);
    phi_s[a] = ph;
  }
  // k̃/q̃ = RMSNorm(B/C)·w + bias (§3.3 items 4-6), in place over the staged rows.
  float rstd_b[kRanks], rstd_c[kRanks];
#pragma unroll
  for (int r = 0; r < kRanks; ++r) {
    if (r >= R) break;
    float ssb = 0.0f, ssc = 0.0f;
    for (int n = tid; n < N; n += nt) {
      const float bv = k_s[r * N + n], cv = q_s[r * N + n];
      ssb += bv * bv, ssc += cv * cv;
    }
    rstd_b[r] = 1.0f / sqrtf(mamba::cuda::block_sum(ssb, scratch) / static_cast<float>(N) + 1e-5f);
    rstd_c[r] = 1.0f / sqrtf(mamba::cuda::block_sum(ssc, scratch) / static_cast<float>(N) + 1e-5f);
  }
  for (int i = tid; i < R * N; i += nt) {
    const int r = i / N, n = i % N;
    const bool first = i == tid;  // its weights and biases were loaded up front
    float rb = rstd_b[0], rc = rstd_c[0];
#pragma unroll
    for (int k = 1; k < kRanks; ++k)
      if (k == r) rb = rstd_b[k], rc = rstd_c[k];
    const float bw = first ? bw0 : p.B_norm_weight[n], cw = first ? cw0 : p.C_norm_weight[n];
    const float bb = first ? bb0 : p.B_bias[(h * R + r) * N + n],
                cb = first ? cb0 : p.C_bias[(h * R + r) * N + n];
    k_s[i] = k_s[i] * rb * bw + bb;
    q_s[i] = q_s[i] * rc * cw + cb;
  }
  __syncthreads();
  // Rotation of S pairs by φ (§3.3 item 7): one thread per (rank, pair), both members at once.
  if (p.rope != Mamba3Rope::none) {
    for (int i = tid; i < R * S; i += nt) {
      const int r = i / S, a = i % S;
      const int i0 = p.half_split ? a : 2 * a, i1 = p.half_split ? a + N / 2 : 2 * a + 1;
      const float ph = phi_s[a], cs = cosf(ph), sn = sinf(ph);
      float* kr = k_s + r * N;
      float* qr = q_s + r * N;
      const float k0 = kr[i0], k1 = kr[i1], q0 = qr[i0], q1 = qr[i1];
      kr[i0] = k0 * cs - k1 * sn;
      kr[i1] = k0 * sn + k1 * cs;
      qr[i0] = q0 * cs - q1 * sn;
      qr[i1] = q0 * sn + q1 * cs;
    }
  }
  // The old angle / key / x are in every sharing block's shared memory: the new ones go out now.
  head_barrier<kSplit>();
  if (split == 0) {
    for (int a = tid; a < S; a += nt) p.angle[bh * S + a] = phi_s[a];
    for (int i = tid; i < R * N; i += nt) {
      const int r = i / N, n = i % N;
      p.k_prev[((int64_t(b) * R + r) * H + h) * N + n] = k_s[i];
    }
    for (int i = tid; i < P; i += nt) p.v_prev[bh * P + i] = x_s[i];
  }

  // S = α·S + Σ_r (β·v_{t−1,r}[p]·k_{t−1,r} + γ·v_{t,r}[p]·k_{t,r});  y_r[p] = S_p·q_r + D·v_r[p].
  const float alpha = expf(adt);
  const float beta = (1.0f - lambda) * dt * alpha, gamma = lambda * dt;
  const RowCoefs c{alpha,
                   beta,
                   gamma,
                   D,
                   xp_s,
                   x_s,
                   k_s,
                   q_s,
                   kp_s,
                   y_s,
                   p.mimo_x ? p.mimo_x + int64_t(h) * R * P : nullptr,
                   P,
                   N,
                   R};
  float acc[kRowsPerWarp][kRanks] = {};
  if constexpr (kPasses > 0) {
#pragma unroll
    for (int j = 0; j < kPasses; ++j) {
      const int p0 = row0 + (warp + j * kWarps) * kRowsPerWarp;
      update_rows<kRanks>(c, state, p0, 4 * lane, pre[j], acc);
      finish_rows<kRanks>(c, p0, lane, acc);
    }
  } else {
    for (int p0 = row0 + warp * kRowsPerWarp; p0 < row0 + rows; p0 += kWarps * kRowsPerWarp) {
      for (int n = 4 * lane; n < N; n += 128) {
        float4 s[kRowsPerWarp];
#pragma unroll
        for (int i = 0; i < kRowsPerWarp; ++i)
          s[i] = p0 + i < P ? __ldcs(reinterpret_cast<const float4*>(state + int64_t(p0 + i) * N + n))
                            : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        update_rows<kRanks>(c, state, p0, n, s, acc);
      }
      finish_rows<kRanks>(c, p0, lane, acc);
    }
  }
  __syncthreads();

  // o[h·P + p] = Σ_r mimo_o·(y_r·rstd_r·w)·silu(z·mimo_z), rstd over the head's P channels only
  // with is_outproj_norm (§3.4).
  float rstd[kRanks];
#pragma unroll
  for (int r = 0; r < kRanks; ++r) {
    rstd[r] = 1.0f;
    if (r < R && p.norm_weight) {
      float ss = 0.0f;
      for (int i = row0 + tid; i < row0 + rows; i += nt) ss += y_s[r * P + i] * y_s[r * P + i];
      ss = mamba::cuda::block_sum(ss, scratch);
      if constexpr (kSplit > 1) {
        if (tid == 0) ss_part[r] = ss;
      } else {
        rstd[r] = 1.0f / sqrtf(ss / static_cast<float>(P) + 1e-5f);
      }
    }
  }
  if constexpr (kSplit > 1) {
    if (p.norm_weight) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
      cluster.sync();  // every block's partial sums are written
#pragma unroll
      for (int r = 0; r < kRanks; ++r) {
        if (r >= R) break;
        float ss = 0.0f;
        for (int k = 0; k < kSplit; ++k) ss += cluster.map_shared_rank(ss_part, k)[r];
        rstd[r] = 1.0f / sqrtf(ss / static_cast<float>(P) + 1e-5f);
      }
      cluster.sync();  // no block leaves (freeing its shared memory) while another still reads it
#endif
    }
  }
  const float* z = row + h * P;
  for (int i = row0 + tid; i < row0 + rows; i += nt) {
    float out = 0.0f;
#pragma unroll
    for (int r = 0; r < kRanks; ++r) {
      if (r >= R) break;
      const int hrp = (h * R + r) * P + i;
      float v = y_s[r * P + i] * rstd[r];
      if (p.norm_weight) v *= p.norm_weight[h * P + i];
      v *= mamba::cuda::silu_f(z[i] * (p.mimo_z ? p.mimo_z[hrp] : 1.0f));
      out += p.mimo_o ? p.mimo_o[hrp] * v : v;
    }
    p.o[bh * P + i] = out;
  }
}

const float* opt(const Tensor& t) {
  if (!t.defined()) return nullptr;
  mamba::cuda::check_cuda_tensor(t, "mamba3_step: parameter");
  MAMBA_CHECK(t.dtype() == DType::f32 && t.is_contiguous());
  return t.f32();
}

}  // namespace

bool mamba3_step_cuda(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                      Tensor& angle, Mamba3ScanState& state, Tensor& o) {
  mamba::cuda::check_cuda_tensor(proj, "mamba3_step: proj");
  MAMBA_CHECK(proj.dim() == 2 && proj.stride(1) == 1 && proj.dtype() == DType::f32,
              "mamba3_step: proj " << shape_str(proj.shape()));
  const int64_t batch = proj.size(0), width = proj.size(1);
  const int64_t H = g.n_heads, P = g.head_dim, R = g.rank, G = g.n_groups, N = g.d_state, S = g.n_rope_angles;
  const Mamba3Layout cols = g.layout();
  const int64_t off_b = cols.b, off_c = cols.c, off_dt = cols.dt;
  MAMBA_CHECK(width == cols.width && H % G == 0, "mamba3_step: proj width " << width);
  MAMBA_CHECK(angle.shape() == (Shape{batch, H, S}) && state.ssm.shape() == (Shape{batch, H, P, N}) &&
              state.k_prev.shape() == (Shape{batch, R, H, N}) &&
              state.v_prev.shape() == (Shape{batch, H, P}));
  MAMBA_CHECK(w.mimo_x.defined() == w.mimo_o.defined() && (w.mimo_o.defined() || R == 1));
  const size_t smem =
      static_cast<size_t>(3 * R * N + 2 * P + R * P + 2 * std::max<int64_t>(S, 1)) * sizeof(float);
  if (N % 4 != 0 || N > 256 || R > kMaxRank || smem > kMaxSmem || batch > 65535 || H > (1 << 30))
    return false;
  for (const Tensor* t :
       std::initializer_list<const Tensor*>{&angle, &state.ssm, &state.k_prev, &state.v_prev}) {
    mamba::cuda::check_cuda_tensor(*t, "mamba3_step: state");
    MAMBA_CHECK(t->dtype() == DType::f32 && t->is_contiguous());
  }
  o = Tensor::empty({batch, H * P}, DType::f32, Device::cuda);
  if (batch == 0) return true;
  if (mamba3_step_stream_applies(exec.plan(), batch, g, w)) {
    mamba3_step_stream_cuda(exec, proj, g, w, angle, state, o);
    return true;
  }
  const StepParams p{.proj = proj.f32(),
                     .proj_stride = proj.stride(0),
                     .dt_bias = opt(g.dt_bias),
                     .B_bias = opt(g.B_bias),
                     .C_bias = opt(g.C_bias),
                     .B_norm_weight = opt(g.B_norm_weight),
                     .C_norm_weight = opt(g.C_norm_weight),
                     .D = opt(w.D),
                     .mimo_x = opt(w.mimo_x),
                     .mimo_z = opt(w.mimo_z),
                     .mimo_o = opt(w.mimo_o),
                     .norm_weight = opt(w.norm_weight),
                     .angle = angle.f32(),
                     .ssm = state.ssm.f32(),
                     .k_prev = state.k_prev.f32(),
                     .v_prev = state.v_prev.f32(),
                     .o = o.f32(),
                     .n_heads = static_cast<int>(H),
                     .head_dim = static_cast<int>(P),
                     .d_state = static_cast<int>(N),
                     .n_groups = static_cast<int>(G),
                     .rank = static_cast<int>(R),
                     .n_angles = static_cast<int>(S),
                     .off_b = off_b,
                     .off_c = off_c,
                     .off_dt = off_dt,
                     .A_floor = g.A_floor,
                     .half_split = g.half_split_pairs,
                     .rope = g.rope};
  MAMBA_CHECK(p.dt_bias && p.B_bias && p.C_bias && p.B_norm_weight && p.C_norm_weight && p.D);
  // Small batches leave most SMs idle (one block per head): a cluster of 2 blocks per head then
  // splits its rows (sm_90+, head_dim 64, d_state 128).
  const int split = mamba::cuda::device_info().compute_capability >= 90 && N == 128 && P == 64 &&
                            batch * H < mamba::cuda::device_info().multiprocessors
                        ? 2
                        : 1;
  // The register-resident state slice: d_state 128, head_dim 64 or 128 (32 rows per pass).
  const int passes =
      N == 128 && (P == 64 || P == 128) ? static_cast<int>(P / split / (kWarps * kRowsPerWarp)) : 0;
  const mamba::cuda::LaunchShape shape{
      dim3(static_cast<unsigned int>(H * split), static_cast<unsigned int>(batch)), dim3(kThreads), smem,
      static_cast<unsigned int>(split)};
  using mamba::cuda::launch_dependent;
  if (split == 2)
    launch_dependent(shape, R == 1 ? mamba3_step_kernel<1, 1, 2> : mamba3_step_kernel<kMaxRank, 1, 2>, p);
  else if (R == 1 && passes == 2)
    launch_dependent(shape, mamba3_step_kernel<1, 2, 1>, p);
  else if (R == 1 && passes == 4)
    launch_dependent(shape, mamba3_step_kernel<1, 4, 1>, p);
  else if (R == 1)
    launch_dependent(shape, mamba3_step_kernel<1, 0, 1>, p);
  else if (passes == 2)
    launch_dependent(shape, mamba3_step_kernel<kMaxRank, 2, 1>, p);
  else
    launch_dependent(shape, mamba3_step_kernel<kMaxRank, 0, 1>, p);
  CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace mamba::ops
