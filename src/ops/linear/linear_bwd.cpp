// Backward of the linear layer on CPU: two OpenBLAS GEMMs (dx = dy·W, dW += dyᵀ·x) and a column
// sum for the bias.
#include <cblas.h>

#include "core/error.h"
#include "core/parallel.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/linear/linear.h"

namespace mamba::ops {

Tensor linear_bwd(Exec& exec, const Tensor& dy_in, const Tensor& x_in, const Tensor& weight, Tensor& dweight,
                  Tensor& dbias) {
  OpScope op_scope(exec, "linear_bwd", x_in.device(), weight.size(0));
  if (x_in.device() == Device::cuda) return cuda_kernels().linear.bwd(dy_in, x_in, weight, dweight, dbias);
  const Tensor dy = dy_in.contiguous(), x = x_in.contiguous();
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  MAMBA_CHECK(x.size(-1) == in && dy.size(-1) == out && dy.numel() == rows * out,
              "linear_bwd: x " << shape_str(x.shape()) << " dy " << shape_str(dy.shape()) << " weight "
                               << shape_str(weight.shape()));
  MAMBA_CHECK(dweight.shape() == weight.shape() && dweight.is_contiguous() && weight.is_contiguous());
  Tensor dx = Tensor::empty(x.shape());  // [..., in]
  if (rows == 0) return dx;
  const int m = static_cast<int>(rows), n_out = static_cast<int>(out), n_in = static_cast<int>(in);
  // dx[rows, in] = dy[rows, out] · W[out, in]
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n_in, n_out, 1.0f, dy.f32(), n_out, weight.f32(),
              n_in, 0.0f, dx.f32(), n_in);
  // dW[out, in] += dyᵀ[out, rows] · x[rows, in]
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, m, 1.0f, dy.f32(), n_out, x.f32(), n_in,
              1.0f, dweight.f32(), n_in);
  if (dbias.defined()) {
    MAMBA_CHECK(dbias.numel() == out && dbias.is_contiguous());
    const float* dyp = dy.f32();
    float* db = dbias.f32();
    parallel_for(out, [&](int64_t o) {
      double acc = 0;
      for (int64_t r = 0; r < rows; ++r) acc += dyp[r * out + o];
      db[o] += static_cast<float>(acc);
    });
  }
  return dx;
}

}  // namespace mamba::ops
