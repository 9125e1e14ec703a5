// cuBLAS opened on first use instead of at program start (core/lazy_library.h says why).
//
// This file defines the few cuBLAS entry points the backend calls (the declarations come from
// cublas_v2.h, so a signature mismatch fails to compile); each forwards to the real function,
// looked up the first time it is called, which is when the first CUDA execution context is
// created. Adding a cuBLAS call to the backend means adding its forwarder here (the link fails
// until then) and its name to kForwarded.
#include "backend/cuda/cublas_loader.h"

#include <cublas_v2.h>

#include <string>

#include "core/lazy_library.h"

namespace {

mamba::LazyLibrary& library() {
  // The soname first (the loader's search path, as the link would have found it), then the
  // toolkit's folder this build was configured with.
  static mamba::LazyLibrary lib{MAMBACPP_CUBLAS_SONAME, MAMBACPP_CUBLAS_DIR "/" MAMBACPP_CUBLAS_SONAME};
  return lib;
}

// One static per forwarder: the lookup runs once.
#define MAMBA_CUBLAS_FORWARD(name, ...)                                               \
  static const auto fn = library().function_like<cublasStatus_t>(#name, __VA_ARGS__); \
  if (!fn) return CUBLAS_STATUS_NOT_INITIALIZED;                                      \
  return fn(__VA_ARGS__)

}  // namespace

namespace mamba::cuda {

std::string cublas_load_check() {
  return library().check({"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetMathMode",
                          "cublasGemmEx", "cublasGemmStridedBatchedEx", "cublasGetStatusString"});
}

}  // namespace mamba::cuda

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  MAMBA_CUBLAS_FORWARD(cublasCreate_v2, handle);
}

cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  MAMBA_CUBLAS_FORWARD(cublasDestroy_v2, handle);
}

cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  MAMBA_CUBLAS_FORWARD(cublasSetStream_v2, handle, stream);
}

cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  MAMBA_CUBLAS_FORWARD(cublasSetMathMode, handle, mode);
}

cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k, const void* alpha,
                                         const void* A, cudaDataType Atype, int lda, const void* B,
                                         cudaDataType Btype, int ldb, const void* beta, void* C,
                                         cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                         cublasGemmAlgo_t algo) {
  MAMBA_CUBLAS_FORWARD(cublasGemmEx, handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb,
                       beta, C, Ctype, ldc, computeType, algo);
}

cublasStatus_t CUBLASWINAPI cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const void* alpha, const void* A, cudaDataType Atype, int lda, long long int strideA, const void* B,
    cudaDataType Btype, int ldb, long long int strideB, const void* beta, void* C, cudaDataType Ctype,
    int ldc, long long int strideC, int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  MAMBA_CUBLAS_FORWARD(cublasGemmStridedBatchedEx, handle, transa, transb, m, n, k, alpha, A, Atype, lda,
                       strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType,
                       algo);
}

// Error text for any status; when the library itself is missing, that is the error to report
// (the status it caused is CUBLAS_STATUS_NOT_INITIALIZED).
const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  if (!library().handle()) {
    static const std::string missing =
        "library " MAMBACPP_CUBLAS_SONAME " could not be loaded (" + library().error() + ")";
    return missing.c_str();
  }
  static const auto fn =
      reinterpret_cast<const char* (*)(cublasStatus_t)>(library().symbol("cublasGetStatusString"));
  return fn ? fn(status) : "unknown cuBLAS status (cublasGetStatusString not found)";
}

}  // extern "C"
