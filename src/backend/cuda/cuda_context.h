// The device context a CUDA op uses: the one bound to the calling thread (cuda_device.h's
// bind_context; ops::ExecScope binds its Exec's). Its stream orders that Exec's work (the caching
// allocator reuses a freed block on the stream it came from), its cuBLAS handle uses
// default (no TF32) math, and its GEMM workspace grows on demand. Only .cu files include this.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "core/tensor.h"

namespace mamba::cuda {

// The bound context's objects (created on first use). An op runs inside an OpScope, which binds
// one; calling these with none bound is a bug (checked).
cudaStream_t stream();
cublasHandle_t cublas();

// Scratch memory for the GEMM paths, at least `bytes`, valid until the next call (stream-ordered).
void* workspace(size_t bytes);

// The bound context's stream, or null (the legacy default stream) when none is bound: core's
// copy / zero hooks then wait for the device before and after (cuda_allocator.cu).
cudaStream_t bound_stream();

// dst[i] = src[i] over two strided layouts of `shape` on the device, converting dtype when they
// differ (strided_copy.cu; core's copy_strided hook).
void copy_strided(void* dst, DType dst_dtype, const Shape& dst_strides, const void* src, DType src_dtype,
                  const Shape& src_strides, const Shape& shape);

// The caching allocator's side of a graph capture (cuda_graph.cu): between begin and end, every
// block handed out or freed joins a new private pool (returned), kept from other users until
// release_pool.
int begin_pool_capture(cudaStream_t stream);
void end_pool_capture(cudaStream_t stream);
void release_pool(int pool);

// Aborts unless t is a defined CUDA tensor (named in the message).
void check_cuda_tensor(const Tensor& t, const char* name);

inline unsigned int ceil_div(int64_t n, int64_t d) {
  return static_cast<unsigned int>((n + d - 1) / d);
}

// Blocks for a grid-stride loop over n elements (at least 1, capped: the loop covers the rest).
inline unsigned int grid_for(int64_t n, int threads = 256) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : blocks > (1 << 20) ? (1 << 20) : blocks);
}

// Whether kernels launch as programmatic dependents (sm_90+, unless the bound context's plan
// turned it off: KernelPlan::dependent_launch).
bool dependent_launch_enabled();

// A launch's shape; cluster_x > 1 groups that many consecutive blocks along x into a thread-block
// cluster (sm_90+: they are co-scheduled and may sync and read each other's shared memory).
struct LaunchShape {
  dim3 grid, block;
  size_t smem = 0;
  unsigned int cluster_x = 1;
};

// The caching allocator's side of a context's end: its stream's free blocks join the unbound pool
// (the stream was synchronized).
void retire_stream(cudaStream_t stream);

// Launches kernel<<<grid, block, smem, stream()>>>(args...) as a programmatic dependent of the
// kernel before it where enabled (kernel_utils.cuh: the kernel must call grid_dependency_wait()
// before touching what earlier kernels write), plainly otherwise.
template <typename... KArgs, typename... Args>
void launch_dependent(const LaunchShape& shape, void (*kernel)(KArgs...), Args&&... args) {
  cudaLaunchAttribute attr[2];
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = shape.grid;
  cfg.blockDim = shape.block;
  cfg.dynamicSmemBytes = shape.smem;
  cfg.stream = stream();
  cfg.attrs = attr;
  if (dependent_launch_enabled()) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[cfg.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (shape.cluster_x > 1) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attr[cfg.numAttrs++].val.clusterDim = {shape.cluster_x, 1, 1};
  }
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace mamba::cuda
