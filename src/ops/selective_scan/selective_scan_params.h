// The selective scan's packed sizes, built once by its fronts (selective_scan.cpp,
// selective_scan_bwd.cpp) after their checks, and the CPU kernels they dispatch to
// (selective_scan_cpu.cpp, selective_scan_bwd_cpu.cpp).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/selective_scan/selective_scan.h"

namespace mamba::ops {

// u [batch, seq_len, d_inner], A [d_inner, d_state].
struct SelectiveScanParams {
  int64_t batch, seq_len, d_inner, d_state;
};

namespace cpu {

// Continues from and updates `state` [batch, d_inner, d_state]; returns y [batch, seq_len, d_inner].
Tensor selective_scan_fwd(const SelectiveScanParams& p, const SelectiveScanArgs& a, Tensor& state);
// From a zero state; dy contiguous.
SelectiveScanGrads selective_scan_bwd(const SelectiveScanParams& p, const SelectiveScanArgs& a,
                                      const Tensor& dy);

}  // namespace cpu

}  // namespace mamba::ops
