// CUDA entry point of the fused Mamba-3 step (mamba3_step_cuda.cu), called by mamba3_step.cpp.
#pragma once
#include "ops/mamba3_step/mamba3_step.h"

namespace mamba::ops {

// Runs the fused kernel and sets o; false (nothing done) for a shape it does not take
// (d_state not a multiple of 4 or over 256, rank over 8, shared memory over 48 KB).
bool mamba3_step_cuda(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                      Tensor& angle, Mamba3ScanState& state, Tensor& o);

// The large-batch SISO path (mamba3_step_stream_cuda.cu: prepare, a streaming state update, a
// store of the new key and x), which mamba3_step_cuda takes where it applies: rank 1 without the
// head norm, d_state 128, head_dim a multiple of 32, batch·heads >= 8 per SM
// (KernelPlan::mamba3_step = fused|stream forces one path). o: [batch, n_heads·head_dim], allocated.
bool mamba3_step_stream_applies(const KernelPlan& plan, int64_t batch, const Mamba3Gates& g,
                                const Mamba3StepParams& w);
void mamba3_step_stream_cuda(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                             Tensor& angle, Mamba3ScanState& state, Tensor& o);

}  // namespace mamba::ops
