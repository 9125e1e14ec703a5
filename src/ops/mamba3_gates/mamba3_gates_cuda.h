// CUDA entry points of the Mamba-3 gates (mamba3_gates_cuda.cu), called by mamba3_gates.cpp.
#pragma once
#include "ops/mamba3_gates/mamba3_gates.h"

namespace mamba::ops {

void mamba3_prepare_fwd_cuda(const Tensor& proj, const Mamba3Gates& g, Tensor& angle, Mamba3ScanArgs& args);
Tensor mamba3_combine_fwd_cuda(const Tensor& y, const Tensor& z, const Tensor& norm_weight,
                               const Tensor& mimo_z, const Tensor& mimo_o);

// Backward entry points (mamba3_gates_bwd_cuda.cu), same contracts as mamba3_prepare_bwd /
// mamba3_combine_bwd; every tensor (gradients included) on the device.
void mamba3_prepare_bwd_cuda(const Tensor& proj, const Mamba3Gates& g, const Mamba3ScanGrads& dscan,
                             Tensor& dproj, Mamba3Gates& grads);
Tensor mamba3_combine_bwd_cuda(const Tensor& dout, const Tensor& y, const Tensor& z,
                               const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o,
                               Tensor& dz, Tensor& dnorm_weight, Tensor& dmimo_z, Tensor& dmimo_o);

}  // namespace mamba::ops
