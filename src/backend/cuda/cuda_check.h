// Checked CUDA and cuBLAS calls: every call of the backend and the ops goes through CUDA_CHECK or
// CUBLAS_CHECK, and every kernel launch is followed by CUDA_CHECK_LAUNCH(). Device out of memory
// throws mamba::Error (a model or batch too large: bad input); any other failure aborts with
// file and line (a bug, or a broken device).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace mamba::cuda {

[[noreturn]] void cuda_failed(cudaError_t err, const char* file, int line, const char* expr);
[[noreturn]] void cublas_failed(cublasStatus_t status, const char* file, int line, const char* expr);

}  // namespace mamba::cuda

#define CUDA_CHECK(expr)                                                      \
  do {                                                                        \
    const cudaError_t mamba_cuda_err_ = (expr);                               \
    if (mamba_cuda_err_ != cudaSuccess)                                       \
      ::mamba::cuda::cuda_failed(mamba_cuda_err_, __FILE__, __LINE__, #expr); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                       \
  do {                                                                           \
    const cublasStatus_t mamba_cublas_st_ = (expr);                              \
    if (mamba_cublas_st_ != CUBLAS_STATUS_SUCCESS)                               \
      ::mamba::cuda::cublas_failed(mamba_cublas_st_, __FILE__, __LINE__, #expr); \
  } while (0)

// After every <<<...>>>: catches bad launch configurations at once (execution errors surface at
// the next synchronizing call, also checked).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
