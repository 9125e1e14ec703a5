// The CPU optimizer kernels (optim_cpu.cpp) the fronts (optim.cpp) dispatch to after their checks;
// AdamW's packed scalars are the public AdamWScalars (optim.h), which the caller computes.
#pragma once
#include "core/tensor.h"
#include "ops/optim/optim.h"

namespace mamba::ops::cpu {

// Contiguous f32 tensors of one size, updated in place.
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s);
double sum_squares(const Tensor& t);
void scale_(Tensor& t, double coef);
// Any contiguous tensor.
void zero_(Tensor& t);

}  // namespace mamba::ops::cpu
