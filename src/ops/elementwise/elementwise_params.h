// The elementwise ops' packed sizes, built once by their fronts (elementwise.cpp,
// elementwise_bwd.cpp) after their checks, and the CPU kernels they dispatch to
// (elementwise_cpu.cpp, elementwise_bwd_cpu.cpp). The kernels trust their inputs: shapes and
// layouts were checked by the front.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/elementwise/cpu_rows.h"
#include "ops/elementwise/elementwise.h"

namespace mamba::ops {

// An op's output seen as [rows, n] (n its last dim; a gated op's input rows are 2n wide).
struct ElementwiseRows {
  int64_t rows, n;
};

namespace cpu {

// Forward (elementwise_cpu.cpp). a, b, x contiguous; h, raw, z may have strided rows as
// elementwise.h allows; ids already range-checked against the table.
void add_(Tensor& a, const Tensor& b);
void scale_(Tensor& x, float s);
Tensor gated_act(const ElementwiseRows& p, const RowReader& rows_h, const Tensor& h, GateAct act,
                 bool gate_first);
Tensor activation(const ElementwiseRows& p, const RowReader& rows_x, const Tensor& x, GateAct act);
Tensor swiglu(const ElementwiseRows& p, const Tensor& h, bool gate_first);
void mul_silu_(const ElementwiseRows& p, Tensor& y, const Tensor& z);
Tensor softplus_bias_clamp(const ElementwiseRows& p, const Tensor& raw, const Tensor& bias, float lo,
                           float hi);
Tensor concat_last(int64_t rows, const Tensor& a, const Tensor& b);
Tensor embedding(const Tensor& ids, const Tensor& table);
Tensor neg_exp(const Tensor& x);

// Backward (elementwise_bwd_cpu.cpp); rows: of dout / the output gradient's [rows, n].
Tensor swiglu_bwd(const ElementwiseRows& p, const Tensor& dout, const Tensor& h, bool gate_first);
Tensor gated_act_bwd(const ElementwiseRows& p, const RowReader& rows_h, const RowReader& rows_d,
                     const Tensor& h, GateAct act, bool gate_first);
Tensor activation_bwd(const ElementwiseRows& p, const RowReader& rows_x, const RowReader& rows_d,
                      const Tensor& x, GateAct act);
void mul_silu_bwd(const Tensor& dout, const Tensor& y, const Tensor& z, Tensor& dy, Tensor& dz);
Tensor softplus_bias_clamp_bwd(const ElementwiseRows& p, const Tensor& dout, const Tensor& raw,
                               const Tensor& bias, float lo, float hi, Tensor& dbias);
// rows: the token ids as table rows, each in [0, vocab).
void embedding_bwd(const std::vector<int64_t>& rows, const Tensor& dout, Tensor& dtable);
void neg_exp_bwd(const Tensor& dA, const Tensor& A, Tensor& dA_log);

}  // namespace cpu

}  // namespace mamba::ops
