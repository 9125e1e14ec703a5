// The cases of the gated RMSNorm's short-row tests (norm_cuda_test.cpp, norm_bwd_cuda_test.cpp):
// the warp-per-group kernels against the one-block-per-group ones.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <tuple>

#include "cuda_testing.h"
#include "testing.h"

namespace mamba::ops::testing_norm {

struct ShortRowCase {
  Tensor x, z, w;  // on the device; z undefined without the gate
  int64_t rows, n, group;
  bool norm_before_gate;
  std::string what;
};

// The Table 5b shapes (40960 rows of 64 and of 128, one group) and odd ones (groups of 1, 7, 33,
// 100, 255, 256 channels; 257, over the cut, the block kernel either way), each without the gate
// and in both gate orders; check(c) runs per case.
template <typename Check>
void for_each_short_row_case(std::mt19937& rng, Check check) {
  using mamba::testing::on_cuda;
  using mamba::testing::random_tensor;
  for (auto [rows, n, group] : {std::tuple<int64_t, int64_t, int64_t>{40960, 64, 64},
                                {40960, 128, 128},
                                {333, 128, 64},
                                {9, 7, 1},
                                {5, 14, 7},
                                {17, 66, 33},
                                {3, 300, 100},
                                {11, 255, 255},
                                {7, 512, 256},
                                {2, 257, 257}}) {
    const Tensor x = on_cuda(random_tensor({rows, n}, rng, -2.0f, 2.0f));
    const Tensor z = on_cuda(random_tensor({rows, n}, rng, -2.0f, 2.0f));
    const Tensor w = on_cuda(random_tensor({n}, rng));
    for (int gate = 0; gate < 3; ++gate)  // none, norm(x·silu(z))·w, norm(x)·w·silu(z)
      check(ShortRowCase{x, gate == 0 ? Tensor() : z, w, rows, n, group, gate == 2,
                         std::to_string(rows) + "x" + std::to_string(n) + "/" + std::to_string(group) +
                             " gate " + std::to_string(gate)});
  }
}

}  // namespace mamba::ops::testing_norm
