// CUDA entry points of the optimizer kernels (optim_cuda.cu), called by optim.cpp.
#pragma once
#include "ops/optim/optim.h"

namespace mamba::ops {

void adamw_update_cuda(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s);
double sum_squares_cuda(const Tensor& t);
Tensor sum_squares_total_cuda(const std::vector<Tensor>& ts);
void clip_scale_cuda_(Tensor& t, const Tensor& total, double max_norm);
void scale_cuda_(Tensor& t, double coef);
void zero_cuda_(Tensor& t);

}  // namespace mamba::ops
