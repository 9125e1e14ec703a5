// The token scans of the Mamba-3 angle kernels (mamba3_gates_cuda.cu, mamba3_gates_bwd_cuda.cu):
// the running angle φ_t = (φ_init + Σ_{s≤t} ω_s·Δ_s) mod 2π and the backward's reverse sum of dφ.
// One thread per (batch, head, angle) stepping through the tokens was 64 blocks at batch 256 and a
// dependent chain per token; here a block takes a (batch, head) and up to 32 angles, its threads
// `rows` runs of `per` consecutive tokens per angle: each sums its run, the block adds the run
// totals before it (a fixed order), and tiles of rows·per tokens follow with a carry. The sums are
// in double, so every prefix is the exact sum of the f32 increments up to double rounding (the
// sequential f32 sum reduced mod 2π after every token, as the CPU does, carries f32 rounding of
// each step instead); the mod is the CPU's (its f32 2π), taken once per output.
#pragma once
#include <cstdint>
#include <numbers>

namespace mamba::ops {

constexpr int kAngleThreads = 256;
constexpr int kAnglePerThread = 8;  // tokens a thread sums before the block's scan, at most

struct AngleTile {
  int sa;                // angles per block (min(S, 32))
  int rows;              // token runs per angle in a tile (kAngleThreads / sa)
  int per;               // tokens per run (at most kAnglePerThread)
  int64_t angle_groups;  // blocks per (batch, head): ceil(S / sa)
};

inline AngleTile angle_tile(int64_t S, int64_t L) {
  const int sa = static_cast<int>(S < 32 ? (S > 0 ? S : 1) : 32), rows = kAngleThreads / sa;
  const int64_t per = (L + rows - 1) / rows;
  return {sa, rows,
          static_cast<int>(per < 1                 ? 1
                           : per > kAnglePerThread ? kAnglePerThread
                                                   : per),
          (S + sa - 1) / sa};
}

// φ mod the f32 2π of the CPU op, as f32 in [0, 2π).
__device__ __forceinline__ float wrap_angle(double x) {
  constexpr float kTwoPiF = 2.0f * std::numbers::pi_v<float>;
  constexpr double kP = static_cast<double>(kTwoPiF);
  x -= kP * floor(x / kP);
  if (x < 0.0) x += kP;
  const float r = static_cast<float>(x);
  return r < kTwoPiF ? r : 0.0f;  // x just under 2π can round up to it
}

// For this block's angles a (a0 + threadIdx.x % sa, those < S): out(t, a, s) for every token t, s
// the double sum of inc(t', a) over the tokens t' up to t (from t' = L − 1 down when reverse). All
// threads of the block call it (it synchronizes).
template <typename Inc, typename Out>
__device__ void angle_scan(int64_t L, int64_t S, int64_t a0, const AngleTile& tile, bool reverse, Inc inc,
                           Out out) {
  __shared__ double tot[kAngleThreads];
  const int al = static_cast<int>(threadIdx.x) % tile.sa, j = static_cast<int>(threadIdx.x) / tile.sa;
  const int64_t a = a0 + al;
  const bool active = j < tile.rows && a < S;
  const int64_t span = static_cast<int64_t>(tile.rows) * tile.per;
  double carry = 0.0;
  for (int64_t p0 = 0; p0 < L; p0 += span) {
    const int64_t first = p0 + static_cast<int64_t>(j) * tile.per;  // this thread's run, in scan order
    double pre[kAnglePerThread];
    double run = 0.0;
#pragma unroll
    for (int k = 0; k < kAnglePerThread; ++k) {
      const int64_t pos = first + k;
      if (active && k < tile.per && pos < L) run += inc(reverse ? L - 1 - pos : pos, a);
      pre[k] = run;
    }
    if (j < tile.rows) tot[threadIdx.x] = run;
    __syncthreads();
    double before = carry, all = carry;
    for (int r = 0; r < tile.rows; ++r) {
      const double v = tot[r * tile.sa + al];
      if (r < j) before += v;
      all += v;
    }
#pragma unroll
    for (int k = 0; k < kAnglePerThread; ++k) {
      const int64_t pos = first + k;
      if (active && k < tile.per && pos < L) out(reverse ? L - 1 - pos : pos, a, before + pre[k]);
    }
    carry = all;
    __syncthreads();  // tot is rewritten by the next tile
  }
}

}  // namespace mamba::ops
