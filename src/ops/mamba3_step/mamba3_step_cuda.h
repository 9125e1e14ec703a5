// CUDA entry point of the fused Mamba-3 step (mamba3_step_cuda.cu), called by mamba3_step.cpp.
#pragma once
#include "ops/mamba3_step/mamba3_step.h"

namespace mamba::ops {

// Runs the fused kernel and sets o; false (nothing done) for a shape it does not take
// (d_state not a multiple of 4 or over 256, rank over 8, shared memory over 48 KB).
bool mamba3_step_cuda(const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w, Tensor& angle,
                      Mamba3ScanState& state, Tensor& o);

}  // namespace mamba::ops
