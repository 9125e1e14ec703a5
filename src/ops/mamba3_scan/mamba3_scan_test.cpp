// Mamba-3 scan tests: a hand-computed recurrence, then chunked forward vs the sequential
// reference over SISO/MIMO, ragged lengths and non-zero input states, split and step equivalence.
#include "ops/mamba3_scan/mamba3_scan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "exec_testing.h"
#include "ops/mamba3_scan/mamba3_scan_testing.h"
#include "testing.h"

// Counts every heap allocation of the test binary, to check that the step allocates nothing.
// (release is out of line so that GCC does not pair the inlined free with operator new.)
static std::atomic<int64_t> g_allocations{0};
[[gnu::noinline]] static void release(void* p) noexcept {
  std::free(p);
}
void* operator new(std::size_t bytes) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(bytes ? bytes : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t) noexcept {
  release(p);
}

namespace mamba::ops {
namespace {

using mamba::testing::max_abs_diff;
using mamba::testing::random_tensor;
using mamba::testing::rel_error;

struct Config {
  int64_t batch, seq_len, mimo_rank, n_heads, head_dim, d_state, chunk_size;
  bool mimo;  // false: SISO (mimo_x undefined, rank 1)
  bool fresh_state;
};

std::string describe(const Config& c) {
  return std::string(c.mimo ? "MIMO" : "SISO") + " R=" + std::to_string(c.mimo_rank) +
         " L=" + std::to_string(c.seq_len) + " Q=" + std::to_string(c.chunk_size) +
         " P=" + std::to_string(c.head_dim) + " N=" + std::to_string(c.d_state) +
         (c.fresh_state ? " zero state" : " random state");
}

Mamba3ScanArgs random_args(const Config& c, std::mt19937& rng) {
  return testing_m3::random_scan_args(
      {c.batch, c.seq_len, c.mimo_rank, c.n_heads, c.head_dim, c.d_state, c.mimo, c.chunk_size}, rng);
}

Mamba3ScanState make_state(const Config& c, std::mt19937& rng) {
  const Shape ssm{c.batch, c.n_heads, c.head_dim, c.d_state};
  const Shape k_prev{c.batch, c.mimo_rank, c.n_heads, c.d_state};
  const Shape v_prev{c.batch, c.n_heads, c.head_dim};
  if (c.fresh_state) return {Tensor::zeros(ssm), Tensor::zeros(k_prev), Tensor::zeros(v_prev)};
  return {random_tensor(ssm, rng), random_tensor(k_prev, rng), random_tensor(v_prev, rng)};
}

Mamba3ScanState copy_state(const Mamba3ScanState& s) {
  return {s.ssm.copy(), s.k_prev.copy(), s.v_prev.copy()};
}

// Tokens [start, end) of every per-token tensor (copied contiguous); weights shared.
Mamba3ScanArgs slice_tokens(const Mamba3ScanArgs& a, int64_t start, int64_t end) {
  Mamba3ScanArgs s = a;
  for (Tensor* t : {&s.x, &s.q, &s.k, &s.adt, &s.dt, &s.trap}) *t = t->slice(1, start, end).contiguous();
  return s;
}

void expect_states_near(const Mamba3ScanState& got, const Mamba3ScanState& want, float tol,
                        const std::string& what) {
  EXPECT_LT(rel_error(got.ssm, want.ssm), tol) << what << ": ssm";
  EXPECT_EQ(max_abs_diff(got.k_prev, want.k_prev), 0.0f) << what << ": k_prev";
  EXPECT_EQ(max_abs_diff(got.v_prev, want.v_prev), 0.0f) << what << ": v_prev";
}

// 1 head, head_dim 1, d_state 1: S_prev = 2, k_prev = 1, v_prev = 4, D = 0.5.
//   t=0: x=1 k=2 q=3, α=0.5 (adt=ln 0.5), Δ=1, λ=0.5 → β=0.25, γ=0.5
//        S_0 = 0.5·2 + 0.25·4·1 + 0.5·1·2 = 3,   y_0 = 3·3 + 0.5·1 = 9.5
//   t=1: x=2 k=1 q=1, α=1, Δ=0.5, λ=0.25 → β=0.375, γ=0.125
//        S_1 = 3 + 0.375·(1·2) + 0.125·(2·1) = 4, y_1 = 4·1 + 0.5·2 = 5
TEST(Mamba3Scan, HandComputedSiso) {
  Mamba3ScanArgs a;
  a.x = Tensor::from_vector({1, 2}, {1, 2, 1, 1});
  a.k = Tensor::from_vector({2, 1}, {1, 2, 1, 1, 1});
  a.q = Tensor::from_vector({3, 1}, {1, 2, 1, 1, 1});
  a.adt = Tensor::from_vector({std::log(0.5f), 0.0f}, {1, 2, 1});
  a.dt = Tensor::from_vector({1.0f, 0.5f}, {1, 2, 1});
  a.trap = Tensor::from_vector({0.5f, 0.25f}, {1, 2, 1});
  a.D = Tensor::from_vector({0.5f}, {1});
  for (int mode = 0; mode < 4; ++mode) {  // ref, fwd with chunks of 1 and 64, two steps
    Mamba3ScanState s{Tensor::from_vector({2}, {1, 1, 1, 1}), Tensor::from_vector({1}, {1, 1, 1, 1}),
                      Tensor::from_vector({4}, {1, 1, 1})};
    std::vector<float> y;
    if (mode == 3) {
      for (int64_t t = 0; t < 2; ++t) {
        Tensor yt;
        mamba3_scan_step(exec, slice_tokens(a, t, t + 1), s, yt);
        y.push_back(yt.to_vector()[0]);
      }
    } else {
      a.chunk_size = mode == 1 ? 1 : 64;
      Tensor yt;
      mode == 0 ? mamba3_scan_ref(exec, a, s, yt) : mamba3_scan_fwd(exec, a, s, yt);
      y = yt.to_vector();
    }
    EXPECT_NEAR(y[0], 9.5f, 1e-5f) << "mode " << mode;
    EXPECT_NEAR(y[1], 5.0f, 1e-5f) << "mode " << mode;
    EXPECT_NEAR(s.ssm.to_vector()[0], 4.0f, 1e-5f) << "mode " << mode;
    EXPECT_EQ(s.k_prev.to_vector()[0], 1.0f);
    EXPECT_EQ(s.v_prev.to_vector()[0], 2.0f);
  }
}

// Rank 2, head_dim 1, d_state 1, zero state, D = 0.5, mimo_x = [1, 2] (v_r = x·mimo_x[r]).
//   t=0: x=1 k=[1,3] q=[2,1], α=1, Δ=1, λ=0.5 → γ=0.5
//        S_0 = 0.5·(1·1 + 2·3) = 3.5, y = [3.5·2 + 0.5·1, 3.5·1 + 0.5·2] = [7.5, 4.5]
//   t=1: x=2 k=[1,1] q=[1,1], α=1, Δ=1, λ=0.5 → β=0.5, γ=0.5
//        S_1 = 3.5 + 0.5·7 + 0.5·(2·1 + 4·1) = 10, y = [10 + 0.5·2, 10 + 0.5·4] = [11, 12]
TEST(Mamba3Scan, HandComputedMimo) {
  Mamba3ScanArgs a;
  a.x = Tensor::from_vector({1, 2}, {1, 2, 1, 1});
  a.k = Tensor::from_vector({1, 3, 1, 1}, {1, 2, 2, 1, 1});
  a.q = Tensor::from_vector({2, 1, 1, 1}, {1, 2, 2, 1, 1});
  a.adt = Tensor::from_vector({0, 0}, {1, 2, 1});
  a.dt = Tensor::from_vector({1, 1}, {1, 2, 1});
  a.trap = Tensor::from_vector({0.5f, 0.5f}, {1, 2, 1});
  a.D = Tensor::from_vector({0.5f}, {1});
  a.mimo_x = Tensor::from_vector({1, 2}, {1, 2, 1});
  for (int mode = 0; mode < 3; ++mode) {  // ref, fwd with chunks of 1 and 64
    Mamba3ScanState s{Tensor::zeros({1, 1, 1, 1}), Tensor::zeros({1, 2, 1, 1}), Tensor::zeros({1, 1, 1})};
    a.chunk_size = mode == 1 ? 1 : 64;
    Tensor y;
    mode == 0 ? mamba3_scan_ref(exec, a, s, y) : mamba3_scan_fwd(exec, a, s, y);
    const std::vector<float> want{7.5f, 4.5f, 11.0f, 12.0f};
    EXPECT_LT(max_abs_diff(y.to_vector(), want), 1e-5f) << "mode " << mode;
    EXPECT_NEAR(s.ssm.to_vector()[0], 10.0f, 1e-5f) << "mode " << mode;
    EXPECT_EQ(s.k_prev.to_vector(), (std::vector<float>{1, 1}));
  }
}

// Chunked forward == sequential reference, outputs and final states.
TEST(Mamba3Scan, FwdMatchesRef) {
  std::mt19937 rng(1234);
  float worst = 0.0f;
  int cases = 0;
  for (int variant = 0; variant < 4; ++variant) {  // SISO, then MIMO ranks 1, 2, 4
    const bool mimo = variant > 0;
    const int64_t rank = mimo ? int64_t{1} << (variant - 1) : 1;
    for (int64_t seq_len : {1, 7, 16, 33, 100}) {
      for (int64_t chunk_size : {8, 16, 64}) {
        for (bool fresh : {true, false}) {
          const int64_t batch = 2 + (seq_len % 2), head_dim = 5 + (seq_len + chunk_size) % 12;
          const int64_t d_state = 8 << ((seq_len + variant) % 3);
          const Config c{batch, seq_len, rank, 3, head_dim, d_state, chunk_size, mimo, fresh};
          const Mamba3ScanArgs a = random_args(c, rng);
          Mamba3ScanState s_ref = make_state(c, rng), s_fwd = copy_state(s_ref);
          Tensor y_ref, y_fwd;
          mamba3_scan_ref(exec, a, s_ref, y_ref);
          mamba3_scan_fwd(exec, a, s_fwd, y_fwd);
          const float err = rel_error(y_fwd, y_ref);
          worst = std::max(worst, err);
          EXPECT_LT(err, 1e-5f) << describe(c);
          expect_states_near(s_fwd, s_ref, 1e-5f, describe(c));
          ++cases;
        }
      }
    }
  }
  RecordProperty("max_rel_error", std::to_string(worst));
  std::printf("fwd vs ref: %d cases, max relative error %.3g\n", cases, worst);
}

// Model-sized heads, so the GEMMs run their full register tiles (32 columns) and their tails
// (head_dim 48 = 32 + 16), at the recommended chunk sizes (64 SISO, 16 for rank 4).
TEST(Mamba3Scan, FwdMatchesRefModelShapes) {
  std::mt19937 rng(4321);
  for (const Config& c :
       {Config{1, 130, 1, 2, 64, 128, 64, false, false}, Config{1, 130, 4, 2, 64, 128, 16, true, false},
        Config{2, 75, 2, 2, 48, 64, 32, true, false}}) {
    Mamba3ScanArgs a = random_args(c, rng);
    // Keep |q·k| ~ 1 at d_state 128, as the normalized keys of a model are.
    for (Tensor* t : {&a.q, &a.k}) {
      for (float& e : std::span(t->f32(), static_cast<size_t>(t->numel()))) e *= 0.1f;
    }
    Mamba3ScanState s_ref = make_state(c, rng), s_fwd = copy_state(s_ref);
    Tensor y_ref, y_fwd;
    mamba3_scan_ref(exec, a, s_ref, y_ref);
    mamba3_scan_fwd(exec, a, s_fwd, y_fwd);
    const float err = rel_error(y_fwd, y_ref);
    EXPECT_LT(err, 1e-5f) << describe(c);
    expect_states_near(s_fwd, s_ref, 1e-5f, describe(c));
    std::printf("fwd vs ref, %s: relative error %.3g, max abs %.3g\n", describe(c).c_str(), err,
                max_abs_diff(y_fwd, y_ref));
  }
}

// A call over the whole sequence == a call over a prefix continued by a call over the rest,
// for the reference and for the chunked forward (whose split lands inside a chunk).
TEST(Mamba3Scan, SplitEqualsWhole) {
  std::mt19937 rng(99);
  for (bool mimo : {false, true}) {
    const Config c{2, 45, mimo ? int64_t{2} : int64_t{1}, 3, 8, 16, 16, mimo, false};
    const Mamba3ScanArgs a = random_args(c, rng);
    const Mamba3ScanState s0 = make_state(c, rng);
    for (auto* scan : {&mamba3_scan_ref, &mamba3_scan_fwd}) {
      Mamba3ScanState whole = copy_state(s0), split = copy_state(s0);
      Tensor y_whole, y_head, y_tail;
      (*scan)(exec, a, whole, y_whole);
      (*scan)(exec, slice_tokens(a, 0, 20), split, y_head);
      (*scan)(exec, slice_tokens(a, 20, c.seq_len), split, y_tail);
      const Tensor whole_head = y_whole.slice(1, 0, 20).contiguous();
      const Tensor whole_tail = y_whole.slice(1, 20, c.seq_len).contiguous();
      EXPECT_LT(rel_error(y_head, whole_head), 1e-5f) << describe(c);
      EXPECT_LT(rel_error(y_tail, whole_tail), 1e-5f) << describe(c);
      expect_states_near(split, whole, 1e-5f, describe(c));
    }
  }
}

// Decoding token by token with the step == the reference over the sequence.
TEST(Mamba3Scan, StepMatchesRef) {
  std::mt19937 rng(7);
  for (bool mimo : {false, true}) {
    const Config c{3, 12, mimo ? int64_t{4} : int64_t{1}, 3, 16, 32, 64, mimo, false};
    const Mamba3ScanArgs a = random_args(c, rng);
    Mamba3ScanState s_ref = make_state(c, rng), s_step = copy_state(s_ref);
    Tensor y_ref;
    mamba3_scan_ref(exec, a, s_ref, y_ref);
    Tensor y_step = Tensor::empty({c.batch, 1, c.mimo_rank, c.n_heads, c.head_dim});
    for (int64_t t = 0; t < c.seq_len; ++t) {
      mamba3_scan_step(exec, slice_tokens(a, t, t + 1), s_step, y_step);
      EXPECT_LT(rel_error(y_step, y_ref.slice(1, t, t + 1).contiguous()), 1e-6f) << describe(c) << " t=" << t;
    }
    expect_states_near(s_step, s_ref, 1e-6f, describe(c));
    // With y given, the decode path allocates nothing.
    const Mamba3ScanArgs one = slice_tokens(a, 0, 1);
    const int64_t before = g_allocations.load();
    mamba3_scan_step(exec, one, s_step, y_step);
    EXPECT_EQ(g_allocations.load() - before, 0) << describe(c);
  }
}

}  // namespace
}  // namespace mamba::ops
