// What the session tests (CPU and CUDA) share: the fixture models and row 0 of their input ids.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "io/npy.h"

namespace mamba::runtime::testing_support {

inline constexpr const char* kFixtures[] = {"hf-mamba1",       "hf-mamba2",       "ssm-mamba1", "ssm-mamba2",
                                            "ssm-mamba3-siso", "ssm-mamba3-mimo", "ssm-hybrid"};

// Row 0 of the fixture's input_ids.npy.
inline std::vector<int32_t> fixture_ids(const std::string& dir) {
  const Tensor ids = io::read_npy(path_join(dir, "input_ids.npy"));
  std::vector<int32_t> out;
  for (int64_t t = 0; t < ids.size(1); ++t) out.push_back(static_cast<int32_t>(ids.data<int64_t>()[t]));
  return out;
}

}  // namespace mamba::runtime::testing_support
