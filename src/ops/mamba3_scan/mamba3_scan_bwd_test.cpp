// Finite-difference check of mamba3_scan_bwd, SISO and MIMO (rank 2): every input (x, q, k, adt,
// dt, λ, D, mimo_x) over several chunks (the last one partial); the loss runs the chunked forward.
#include <gtest/gtest.h>

#include "core/error.h"
#include "exec_testing.h"
#include "grad_check.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "testing.h"

namespace mamba::ops {
namespace {

void check(int64_t R, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t batch = 2, L = 7, H = 3, P = 4, N = 5;
  Mamba3ScanArgs a;
  a.x = testing::random_tensor({batch, L, H, P}, rng);
  a.q = testing::random_tensor({batch, L, R, H, N}, rng);
  a.k = testing::random_tensor({batch, L, R, H, N}, rng);
  a.adt = testing::random_tensor({batch, L, H}, rng, -1.0f, -0.05f);
  a.dt = testing::random_tensor({batch, L, H}, rng, 0.1f, 1.0f);
  a.trap = testing::random_tensor({batch, L, H}, rng, 0.1f, 0.9f);
  a.D = testing::random_tensor({H}, rng);
  if (R > 1) a.mimo_x = testing::random_tensor({H, R, P}, rng);
  a.chunk_size = 3;
  Tensor dout = testing::random_tensor({batch, L, R, H, P}, rng);
  const Mamba3ScanGrads g = mamba3_scan_bwd(exec, a, dout);
  auto loss = [&] {
    Mamba3ScanState s{Tensor::zeros({batch, H, P, N}), Tensor::zeros({batch, R, H, N}),
                      Tensor::zeros({batch, H, P})};
    Tensor y;
    mamba3_scan_fwd(exec, a, s, y);
    return testing::weighted_sum(y, dout);
  };
  std::vector<testing::GradInput> inputs = {
      {"x", a.x, g.dx},    {"q", a.q, g.dq},          {"k", a.k, g.dk}, {"adt", a.adt, g.dadt},
      {"dt", a.dt, g.ddt}, {"trap", a.trap, g.dtrap}, {"D", a.D, g.dD}};
  if (R > 1) inputs.push_back({"mimo_x", a.mimo_x, g.dmimo_x});
  testing::expect_grads_match(loss, inputs);
}

TEST(Mamba3ScanBwd, Siso) {
  check(1, 1);
}
TEST(Mamba3ScanBwd, MimoRank2) {
  check(2, 2);
}

// bf16 operands (which CUDA's fused backward reads) are refused on the CPU with a message.
TEST(Mamba3ScanBwd, Bf16OperandsAreRefusedOnTheCpu) {
  std::mt19937 rng(5);
  Mamba3ScanArgs a;
  a.x = testing::random_tensor({1, 4, 2, 3}, rng);
  a.q = testing::random_tensor({1, 4, 1, 2, 4}, rng).to(DType::bf16);
  a.k = testing::random_tensor({1, 4, 1, 2, 4}, rng);
  a.adt = testing::random_tensor({1, 4, 2}, rng, -1.0f, -0.05f);
  a.dt = testing::random_tensor({1, 4, 2}, rng, 0.1f, 1.0f);
  a.trap = testing::random_tensor({1, 4, 2}, rng, 0.1f, 0.9f);
  a.D = testing::random_tensor({2}, rng);
  try {
    (void)mamba3_scan_bwd(exec, a, testing::random_tensor({1, 4, 1, 2, 3}, rng));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be f32, found bf16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mamba::ops
