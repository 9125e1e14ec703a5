// Optimizer kernels (the device-free train layer calls these): the AdamW element update, the
// sum of squares behind global-norm clipping, in-place scaling and zeroing. Every op takes f32
// tensors on one device, CPU or CUDA (dispatch on the parameter's / input's device), and does its
// per-element arithmetic in double so both devices give the same bits as torch's formulas.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// One AdamW step's scalars (torch.optim.AdamW, single-tensor path), computed by the caller.
struct AdamWScalars {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double decay = 1.0;      // 1 − lr·weight_decay (1 for the no-decay set)
  double step_size = 0.0;  // lr / (1 − β1^t)
  double bc2_sqrt = 1.0;   // √(1 − β2^t)
};

// In place over contiguous tensors of one shape: p ← p·decay; m ← m + (g − m)(1 − β1);
// v ← β2·v + (1 − β2)·g²; p ← p − step_size · m / (√v / bc2_sqrt + eps).
// With `scalars` (6 eight-byte slots on the parameter's device holding an AdamWScalars, as
// adamw_scalars_tensor writes them) the kernel reads the scalars there instead of taking `s`: a
// step recorded in a CUDA graph then follows the schedule when the buffer is rewritten between
// replays. Same values, same bits.
void adamw_update(Exec& exec, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s,
                  const Tensor* scalars = nullptr);
// Writes `s` into `out` (an i64 tensor of 6 elements on any device; a copy from the host).
void write_adamw_scalars(Tensor& out, const AdamWScalars& s);

// Σ t² in double over a contiguous f32 tensor (0 for an empty one). CUDA: returns after a sync.
double sum_squares(Exec& exec, const Tensor& t);

// Σ over `ts` (in order) of sum_squares(t): the squared global gradient norm, as a 1-element i64
// tensor on the tensors' device whose 8 bytes hold the double. On CUDA nothing is read back (one
// partials workspace, two finishing launches, deterministic); all tensors on one device.
Tensor sum_squares_total(Exec& exec, const std::vector<Tensor>& ts);

// Global-norm clipping with the total of sum_squares_total read where it lives: with
// coef = max_norm / (√total + 1e-6), t ← float(t · coef) when max_norm > 0 and coef < 1.
void clip_scale_(Exec& exec, Tensor& t, const Tensor& total, double max_norm);

// t ← float(t · coef), in place over a contiguous f32 tensor.
void scale_(Exec& exec, Tensor& t, double coef);

// t ← 0, in place over a contiguous tensor (a memset on the device, no host staging).
void zero_(Exec& exec, Tensor& t);

}  // namespace mamba::ops
