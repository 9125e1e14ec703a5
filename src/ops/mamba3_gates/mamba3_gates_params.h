// The Mamba-3 gates' packed sizes, built once by their fronts (mamba3_gates.cpp,
// mamba3_gates_bwd.cpp) after their checks, and the CPU kernels they dispatch to
// (mamba3_gates_cpu.cpp, mamba3_gates_bwd_cpu.cpp). CUDA tensors go through the kernel table.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

// prepare: proj [batch, seq_len, width]; heads H, head_dim P, d_state N, groups G, rank R, rope
// angles S; off_b / off_c / off_dt: the proj columns of B, C and dd_dt (mamba3_layout.h).
struct Mamba3PrepareSizes {
  int64_t batch, seq_len;
  int64_t H, P, N, G, R, S, off_b, off_c, off_dt, width, heads_per_group;
};

// combine: y [batch, seq_len, R, H, P]; mimo (mimo_z, mimo_o defined), outproj_norm (norm_weight
// defined).
struct Mamba3CombineDims {
  int64_t batch, seq_len, R, H, P;
  bool mimo, outproj_norm;
};

// The fronts' shared check of proj (contiguous, [batch, seq_len, g.layout().width]); `op` names
// the caller in the messages.
Mamba3PrepareSizes mamba3_prepare_sizes(const char* op, const Tensor& proj, const Mamba3Gates& g);

namespace cpu {

// proj contiguous; allocates args.q/k/adt/dt/trap and advances angle [batch, H, S].
void mamba3_prepare_fwd(const Mamba3PrepareSizes& p, const Tensor& proj, const Mamba3Gates& g, Tensor& angle,
                        Mamba3ScanArgs& a);
// y contiguous, z [batch, seq_len, H·P] with a contiguous last dim.
Tensor mamba3_combine_fwd(const Mamba3CombineDims& d, const Tensor& y, const Tensor& z,
                          const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o);

// From a zero angle state; dproj contiguous like proj, grads' tensors sized like g's.
void mamba3_prepare_bwd(const Mamba3PrepareSizes& l, const Tensor& proj, const Mamba3Gates& g,
                        const Mamba3ScanGrads& ds, Tensor& dproj, Mamba3Gates& grads);
// dout contiguous [batch, seq_len, H·P].
Tensor mamba3_combine_bwd(const Mamba3CombineDims& d, const Tensor& dout, const Tensor& y, const Tensor& z,
                          const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o, Tensor& dz,
                          Tensor& dnorm_weight, Tensor& dmimo_z, Tensor& dmimo_o);

}  // namespace cpu

}  // namespace mamba::ops
