// Helpers of the CPU-vs-CUDA parity tests (label `cuda`): skip when no device is usable, move
// tensors, and compare a CUDA result with the CPU reference relative to the reference's scale.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/tensor.h"
#include "ops/device.h"

// Skips the current test (reported as skipped by CTest) when there is no CUDA device.
#define MAMBA_REQUIRE_CUDA()                                                                      \
  do {                                                                                            \
    if (!::mamba::ops::device_available(::mamba::Device::cuda)) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace mamba::testing {

inline Tensor on_cuda(const Tensor& t) {
  return t.defined() ? t.to(Device::cuda) : t;
}

// max |gpu - cpu| / max(1, max |cpu|): absolute for O(1) values, relative for large ones.
inline float scaled_max_diff(const Tensor& gpu, const Tensor& cpu) {
  EXPECT_EQ(gpu.device(), Device::cuda);
  EXPECT_EQ(gpu.shape(), cpu.shape());
  if (gpu.shape() != cpu.shape()) return INFINITY;
  const std::vector<float> g = gpu.to_vector(), c = cpu.to_vector();
  float diff = 0.0f, scale = 1.0f;
  for (size_t i = 0; i < g.size(); ++i) {
    const float d = std::fabs(g[i] - c[i]);
    if (std::isnan(d)) return INFINITY;
    diff = std::max(diff, d);
    scale = std::max(scale, std::fabs(c[i]));
  }
  return diff / scale;
}

}  // namespace mamba::testing
