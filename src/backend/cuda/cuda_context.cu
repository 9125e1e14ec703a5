// Execution contexts (stream, cuBLAS handles, workspace; one per ops::Exec), error reporting and
// device queries. The backend's hooks are registered from this file's static initializer, which
// every binary using a CUDA op links (the ops call stream()).
#include <utility>

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

struct Context {
  ContextOptions options;
  bool created = false;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

namespace {

// The context this thread's CUDA work runs on (ops::ExecScope binds its Exec's).
thread_local Context* bound = nullptr;

Context& ready(Context* c) {
  MAMBA_CHECK(c != nullptr, "CUDA work outside an execution context (ops::Exec): open an ExecScope");
  if (!c->created) {
    if (!available()) throw_error(ErrorCode::unsupported, "no CUDA device found");
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&c->cublas));
    CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
    // fp32 GEMMs must stay fp32 (SPEC §0, fixtures at 1e-4): no TF32 tensor-op math.
    CUBLAS_CHECK(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    c->created = true;
  }
  return *c;
}

}  // namespace

Context* create_context(const ContextOptions& options) {
  auto* c = new Context();
  c->options = options;
  return c;
}

void destroy_context(Context* c) {
  if (!c) return;
  if (bound == c) bound = nullptr;
  if (c->created) {
    // Errors are not thrown from here (it runs in destructors): a failed wait leaves the objects.
    if (c->workspace) (void)cudaFreeAsync(c->workspace, c->stream);
    if (cudaStreamSynchronize(c->stream) == cudaSuccess) {
      retire_stream(c->stream);
      (void)cublasDestroy(c->cublas);
      (void)cudaStreamDestroy(c->stream);
    } else {
      (void)cudaGetLastError();
      return;  // leaks the context rather than freeing what queued work may still use
    }
  }
  delete c;
}

Context* bind_context(Context* c) {
  return std::exchange(bound, c);
}

Context* bound_context() {
  return bound;
}

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
  static const bool device_has = device_info().compute_capability >= 90;
  return device_has && (bound == nullptr || bound->options.dependent_launch);
}

cudaStream_t stream() {
  return ready(bound).stream;
}
cublasHandle_t cublas() {
  return ready(bound).cublas;
}

cudaStream_t bound_stream() {
  return bound ? ready(bound).stream : nullptr;
}

void* workspace(size_t bytes) {
  Context& c = ready(bound);  // one thread per context: no lock
  if (bytes > c.workspace_bytes) {
    // The old block may still be read by queued work: free it stream-ordered.
    if (c.workspace) CUDA_CHECK(cudaFreeAsync(c.workspace, c.stream));
    CUDA_CHECK(cudaMallocAsync(&c.workspace, bytes, c.stream));
    c.workspace_bytes = bytes;
  }
  return c.workspace;
}

void synchronize(Context* c) {
  if (c && c->created) CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

void synchronize_device() {
  CUDA_CHECK(cudaDeviceSynchronize());
}

void check_cuda_tensor(const Tensor& t, const char* name) {
  MAMBA_CHECK(t.defined() && t.device() == Device::cuda, name << " must be a CUDA tensor");
}

namespace {
// Registration at start-up: stores the hooks only (no CUDA call until the first allocation).
const bool registered = (register_backend(), true);
}  // namespace

}  // namespace mamba::cuda
