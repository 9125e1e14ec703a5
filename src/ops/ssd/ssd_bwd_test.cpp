// Finite-difference check of ssd_bwd: every input (x, dt, A, B, C, D) with two groups, several
// chunks (the last one partial), D per head and per channel; the loss runs the chunked forward.
#include <gtest/gtest.h>

#include "core/error.h"
#include "exec_testing.h"
#include "grad_check.h"
#include "ops/ssd/ssd.h"
#include "testing.h"

namespace mamba::ops {
namespace {

void check(bool d_per_channel, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t batch = 2, L = 8, H = 4, P = 3, G = 2, N = 5;
  SsdArgs a;
  a.x = testing::random_tensor({batch, L, H, P}, rng);
  a.dt = testing::random_tensor({batch, L, H}, rng, 0.1f, 1.0f);
  a.A = testing::random_tensor({H}, rng, -1.5f, -0.2f);
  a.B = testing::random_tensor({batch, L, G, N}, rng);
  a.C = testing::random_tensor({batch, L, G, N}, rng);
  a.D = testing::random_tensor(d_per_channel ? Shape{H * P} : Shape{H}, rng);
  a.chunk_size = 3;
  Tensor dout = testing::random_tensor({batch, L, H, P}, rng);
  const SsdGrads g = ssd_bwd(exec, a, dout);
  auto loss = [&] {
    Tensor state = Tensor::zeros({batch, H, P, N});
    return testing::weighted_sum(ssd_fwd(exec, a, state), dout);
  };
  testing::expect_grads_match(loss, {{"x", a.x, g.dx},
                                     {"dt", a.dt, g.ddt},
                                     {"A", a.A, g.dA},
                                     {"B", a.B, g.dB},
                                     {"C", a.C, g.dC},
                                     {"D", a.D, g.dD}});
}

TEST(SsdBwd, DPerHead) {
  check(false, 1);
}
TEST(SsdBwd, DPerChannel) {
  check(true, 2);
}

// bf16 tensors (which CUDA's fused backward reads) are refused on the CPU with a message, not read as f32.
TEST(SsdBwd, Bf16TensorsAreRefusedOnTheCpu) {
  std::mt19937 rng(3);
  SsdArgs a;
  a.x = testing::random_tensor({1, 4, 2, 3}, rng).to(DType::bf16);
  a.dt = testing::random_tensor({1, 4, 2}, rng, 0.1f, 1.0f);
  a.A = testing::random_tensor({2}, rng, -1.5f, -0.2f);
  a.B = testing::random_tensor({1, 4, 1, 5}, rng);
  a.C = testing::random_tensor({1, 4, 1, 5}, rng);
  a.D = testing::random_tensor({2}, rng);
  try {
    (void)ssd_bwd(exec, a, testing::random_tensor({1, 4, 2, 3}, rng));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be f32, found bf16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mamba::ops
