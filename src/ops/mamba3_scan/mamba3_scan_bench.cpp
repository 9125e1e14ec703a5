// Mamba-3 scan CPU benchmark at the d_model 768 layer shape (24 heads × head_dim 64, d_state 128):
// chunked forward over 2048 tokens (SISO chunk 64, MIMO R=4 chunk 16), the sequential
// reference for comparison, and the one-token step. GFLOP/s counts the chunked form's useful work.
#include <benchmark/benchmark.h>

#include <random>

#include "core/tensor.h"
#include "ops/exec.h"
#include "ops/mamba3_scan/mamba3_scan.h"

// The bench's execution context (never destroyed: CUDA objects must not outlive the driver).
static mamba::ops::Exec& exec = *new mamba::ops::Exec();

namespace {

using mamba::Shape;
using mamba::Tensor;
using mamba::ops::Mamba3ScanArgs;
using mamba::ops::Mamba3ScanState;

constexpr int64_t kHeads = 24, kHeadDim = 64, kDState = 128;

Tensor uniform(const Shape& shape, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

struct Problem {
  Mamba3ScanArgs args;
  Mamba3ScanState state;
  Tensor y;  // [1, seq_len, rank, n_heads, head_dim]
};

Problem make_problem(int64_t seq_len, int64_t rank, int64_t chunk_size) {
  std::mt19937 rng(0);
  Problem pr;
  Mamba3ScanArgs& a = pr.args;
  const Shape qk{1, seq_len, rank, kHeads, kDState}, per_token{1, seq_len, kHeads};
  a.x = uniform({1, seq_len, kHeads, kHeadDim}, rng, -1, 1);
  a.q = uniform(qk, rng, -0.1f, 0.1f);
  a.k = uniform(qk, rng, -0.1f, 0.1f);
  a.adt = uniform(per_token, rng, -0.2f, 0.0f);
  a.dt = uniform(per_token, rng, 0.001f, 0.1f);
  a.trap = uniform(per_token, rng, 0.0f, 1.0f);
  a.D = Tensor::full({kHeads}, 1.0f);
  if (rank > 1) a.mimo_x = Tensor::full({kHeads, rank, kHeadDim}, 1.0f / static_cast<float>(rank));
  a.chunk_size = chunk_size;
  pr.state = {Tensor::zeros({1, kHeads, kHeadDim, kDState}), Tensor::zeros({1, rank, kHeads, kDState}),
              Tensor::zeros({1, kHeads, kHeadDim})};
  pr.y = Tensor::empty({1, seq_len, rank, kHeads, kHeadDim});
  return pr;
}

// Per chunk of M = chunk·rank rows: inter-chunk output and state update (2·M·N·P each) and the
// causal half of the score and score·V products (M·(M + rank)/2 entries, N + P each).
double chunked_flops(int64_t seq_len, int64_t rank, int64_t chunk_size) {
  const double M = static_cast<double>(chunk_size * rank), P = kHeadDim, N = kDState;
  const double per_chunk = 4.0 * M * N * P + M * (M + static_cast<double>(rank)) * (N + P);
  return per_chunk * static_cast<double>(seq_len / chunk_size) * kHeads;
}

void report(benchmark::State& st, int64_t tokens, double flops) {
  st.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// args: seq_len, rank, chunk_size
void BM_mamba3_scan_fwd(benchmark::State& st) {
  const int64_t seq_len = st.range(0), rank = st.range(1), chunk_size = st.range(2);
  Problem pr = make_problem(seq_len, rank, chunk_size);
  for (auto _ : st) {
    pr.state.ssm.zero();
    mamba::ops::mamba3_scan_fwd(exec, pr.args, pr.state, pr.y);
    benchmark::DoNotOptimize(pr.y.raw());
  }
  report(st, seq_len, chunked_flops(seq_len, rank, chunk_size));
}
BENCHMARK(BM_mamba3_scan_fwd)
    ->ArgNames({"L", "R", "Q"})
    ->Args({2048, 1, 64})
    ->Args({2048, 4, 16})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_mamba3_scan_ref(benchmark::State& st) {
  const int64_t seq_len = st.range(0), rank = st.range(1);
  Problem pr = make_problem(seq_len, rank, 64);
  for (auto _ : st) {
    pr.state.ssm.zero();
    mamba::ops::mamba3_scan_ref(exec, pr.args, pr.state, pr.y);
    benchmark::DoNotOptimize(pr.y.raw());
  }
  // The recurrence: per token, head and rank, 2 rank-1 updates and S·q (3·2·P·N) + α·S.
  report(st, seq_len, static_cast<double>(seq_len * kHeads) * (6.0 * rank + 1.0) * kHeadDim * kDState);
}
BENCHMARK(BM_mamba3_scan_ref)
    ->ArgNames({"L", "R"})
    ->Args({2048, 1})
    ->Args({2048, 4})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_mamba3_scan_step(benchmark::State& st) {
  const int64_t rank = st.range(0);
  Problem pr = make_problem(1, rank, 64);
  for (auto _ : st) {
    mamba::ops::mamba3_scan_step(exec, pr.args, pr.state, pr.y);
    benchmark::DoNotOptimize(pr.y.raw());
  }
  report(st, 1, static_cast<double>(kHeads) * (6.0 * rank + 1.0) * kHeadDim * kDState);
}
BENCHMARK(BM_mamba3_scan_step)->ArgNames({"R"})->Arg(1)->Arg(4)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
