// The Mamba-3 scan's packed parameters, built once by its fronts (mamba3_scan.cpp,
// mamba3_scan_bwd.cpp) after their checks, and the CPU kernels they dispatch to
// (mamba3_scan_cpu.cpp, mamba3_scan_bwd_cpu.cpp). CUDA tensors go through the kernel table.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

// The step keeps per-rank coefficients on the stack.
inline constexpr int64_t kMamba3MaxRank = 16;

// A forward call's sizes.
struct Mamba3ScanDims {
  int64_t batch, seq_len, mimo_rank, n_heads, head_dim, d_state;
};

// A backward call's sizes: batch, seq_len L, rank R, heads H, head_dim P, d_state N and the
// recompute chunk Q.
struct Mamba3ScanBwdSizes {
  int64_t batch, L, R, H, P, N, Q;
};

namespace cpu {

// The chunked form of §3.5 (whole sequences), the token-by-token recurrence of §3.4 (the
// reference), and one token. y is allocated and every shape checked by the front.
void mamba3_scan_chunked(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y,
                         const Mamba3ScanDims& d);
void mamba3_scan_recurrent(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y,
                           const Mamba3ScanDims& d);
void mamba3_scan_one_token(const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y,
                           const Mamba3ScanDims& d);

// The sequential reverse recurrence from a zero state; dy contiguous.
Mamba3ScanGrads mamba3_scan_bwd(const Mamba3ScanArgs& a, const Tensor& dy, const Mamba3ScanBwdSizes& z);

}  // namespace cpu

}  // namespace mamba::ops
