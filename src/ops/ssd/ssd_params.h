// The SSD's packed sizes, built once by its fronts (ssd.cpp, ssd_bwd.cpp) after their checks, and
// the CPU kernels they dispatch to (ssd_cpu.cpp, ssd_bwd_cpu.cpp). CUDA tensors go through the
// kernel table.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/ssd/ssd.h"

namespace mamba::ops {

// A forward call's sizes; D is per channel ([n_heads * head_dim]) or per head.
struct SsdDims {
  int64_t batch, seq_len, n_heads, head_dim, n_groups, d_state, heads_per_group;
  bool d_per_channel;
};

// A backward call's sizes: batch, seq_len L, heads H, head_dim P, groups G, d_state N and the
// recompute chunk Q.
struct SsdBwdSizes {
  int64_t batch, L, H, P, G, N, Q;
  bool d_per_channel;
};

namespace cpu {

// The token-by-token recurrence (the reference, and one token) and the chunked form of §2.3;
// both continue and update `state`.
Tensor ssd_recurrent(const SsdArgs& a, Tensor& state, const SsdDims& d);
Tensor ssd_chunked(const SsdArgs& a, Tensor& state, const SsdDims& d);

// The sequential reverse recurrence from a zero state; dy contiguous.
SsdGrads ssd_bwd(const SsdArgs& a, const Tensor& dy, const SsdBwdSizes& z);

}  // namespace cpu

}  // namespace mamba::ops
