// Device context (stream, cuBLAS handles, workspace), error reporting and device queries. The
// backend's hooks are registered from this file's static initializer, which every binary using a
// CUDA op links (the ops call stream()).
#include <cstdlib>
#include <mutex>

#include "backend/cuda/cuda_context.h"
#include "core/error.h"

namespace mamba::cuda {

void cuda_failed(cudaError_t err, const char* file, int line, const char* expr) {
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the sticky-free error so the caller may recover
    throw_error(ErrorCode::io, "CUDA device out of memory (", expr, ")");
  }
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
    throw_error(ErrorCode::unsupported, "no usable CUDA device: ", cudaGetErrorString(err));
  check_failed(file, line, expr,
               std::string("CUDA error ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

void cublas_failed(cublasStatus_t status, const char* file, int line, const char* expr) {
  check_failed(file, line, expr, std::string("cuBLAS error ") + cublasGetStatusString(status));
}

namespace {

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Created on first use and never destroyed: tensors released during static destruction may
// still reach the allocator, and CUDA objects must not be freed after the driver unloads.
Context& context() {
  static Context* ctx = [] {
    if (!available()) throw_error(ErrorCode::unsupported, "no CUDA device found");
    auto* c = new Context();
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&c->cublas));
    CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
    // fp32 GEMMs must stay fp32 (SPEC §0, fixtures at 1e-4): no TF32 tensor-op math.
    CUBLAS_CHECK(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    CUBLAS_CHECK(cublasLtCreate(&c->cublaslt));
    return c;
  }();
  return *ctx;
}

std::mutex& workspace_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

bool available() {
  static const bool ok = [] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) (void)cudaGetLastError();
    return err == cudaSuccess && n > 0;
  }();
  return ok;
}

const DeviceInfo& device_info() {
  static const DeviceInfo info = [] {
    if (!available()) throw_error(ErrorCode::unsupported, "no CUDA device found");
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
    DeviceInfo d;
    d.name = p.name;
    d.compute_capability = p.major * 10 + p.minor;
    d.multiprocessors = p.multiProcessorCount;
    d.global_memory = p.totalGlobalMem;
    d.l2_cache = static_cast<size_t>(p.l2CacheSize);
    d.shared_memory_per_block_optin = p.sharedMemPerBlockOptin;
    return d;
  }();
  return info;
}

bool dependent_launch_enabled() {
  // On the 1.3B decode graph: 1.68 vs 1.75 ms/token (H100, 2026-11-27; docs/benchmarks.md).
  static const bool on = device_info().compute_capability >= 90 && std::getenv("MAMBACPP_NO_PDL") == nullptr;
  return on;
}

cudaStream_t stream() {
  return context().stream;
}
cublasHandle_t cublas() {
  return context().cublas;
}
cublasLtHandle_t cublaslt() {
  return context().cublaslt;
}

void* workspace(size_t bytes) {
  std::lock_guard<std::mutex> lock(workspace_mutex());
  Context& c = context();
  if (bytes > c.workspace_bytes) {
    // The old block may still be read by queued work: free it stream-ordered.
    if (c.workspace) CUDA_CHECK(cudaFreeAsync(c.workspace, c.stream));
    CUDA_CHECK(cudaMallocAsync(&c.workspace, bytes, c.stream));
    c.workspace_bytes = bytes;
  }
  return c.workspace;
}

void synchronize() {
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void check_cuda_tensor(const Tensor& t, const char* name) {
  MAMBA_CHECK(t.defined() && t.device() == Device::cuda, name << " must be a CUDA tensor");
}

namespace {
// Registration at start-up: stores the hooks only (no CUDA call until the first allocation).
const bool registered = (register_backend(), true);
}  // namespace

}  // namespace mamba::cuda
