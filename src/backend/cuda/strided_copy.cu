// Strided copy on the device (Tensor::copy_from, contiguous(), column views, KV-cache writes).
// Same-dtype copies move raw elements of 1/2/4/8 bytes (exact for i64 ids); dtype conversions go
// through f32, like the CPU path. Leading dims are merged where the layouts allow.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/cuda_context.h"
#include "core/error.h"

namespace mamba::cuda {

namespace {

constexpr int kMaxDims = 8;

struct StridedLayout {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t dst_stride[kMaxDims];
  int64_t src_stride[kMaxDims];
};

// Element offsets of linear index i in both layouts (row-major order of `shape`).
__device__ inline void offsets(const StridedLayout& l, int64_t i, int64_t& dst_off, int64_t& src_off) {
  dst_off = 0;
  src_off = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % l.shape[d];
    i /= l.shape[d];
    dst_off += idx * l.dst_stride[d];
    src_off += idx * l.src_stride[d];
  }
}

template <typename T>
__global__ void strided_copy_kernel(T* dst, const T* src, StridedLayout l, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t d, s;
    offsets(l, i, d, s);
    dst[d] = src[s];
  }
}

__device__ inline float load_f32(const void* p, int64_t i, DType t) {
  switch (t) {
    case DType::f32:
      return static_cast<const float*>(p)[i];
    case DType::bf16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::f16:
      return __half2float(static_cast<const __half*>(p)[i]);
    case DType::i64:
      return static_cast<float>(static_cast<const int64_t*>(p)[i]);
    case DType::i32:
      return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DType::u8:
      return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
    default:  // block formats (q8_0, ...) are never converted element-wise
      break;
  }
  return 0.0f;
}

__device__ inline void store_f32(void* p, int64_t i, DType t, float v) {
  switch (t) {
    case DType::f32:
      static_cast<float*>(p)[i] = v;
      break;
    case DType::bf16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
      break;
    case DType::f16:
      static_cast<__half*>(p)[i] = __float2half_rn(v);
      break;
    case DType::i64:
      static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v);
      break;
    case DType::i32:
      static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
      break;
    case DType::u8:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
      break;
    default:  // block formats (q8_0, ...) are never converted element-wise
      break;
  }
}

__global__ void convert_copy_kernel(void* dst, DType dst_dtype, const void* src, DType src_dtype,
                                    StridedLayout l, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t d, s;
    offsets(l, i, d, s);
    store_f32(dst, d, dst_dtype, load_f32(src, s, src_dtype));
  }
}

// Drops size-1 dims and merges dim d into d+1 where both layouts are contiguous across them.
StridedLayout make_layout(const Shape& shape, const Shape& dst_strides, const Shape& src_strides) {
  StridedLayout l{};
  l.ndim = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (l.ndim > 0) {
      const int k = l.ndim - 1;
      if (l.dst_stride[k] == dst_strides[d] * shape[d] && l.src_stride[k] == src_strides[d] * shape[d]) {
        l.shape[k] *= shape[d];
        l.dst_stride[k] = dst_strides[d];
        l.src_stride[k] = src_strides[d];
        continue;
      }
    }
    MAMBA_CHECK(l.ndim < kMaxDims, "strided copy of more than " << kMaxDims << " dims: " << shape_str(shape));
    l.shape[l.ndim] = shape[d];
    l.dst_stride[l.ndim] = dst_strides[d];
    l.src_stride[l.ndim] = src_strides[d];
    ++l.ndim;
  }
  if (l.ndim == 0) {  // a single element
    l.ndim = 1;
    l.shape[0] = 1;
    l.dst_stride[0] = l.src_stride[0] = 1;
  }
  return l;
}

template <typename T>
void launch_raw(void* dst, const void* src, const StridedLayout& l, int64_t n, unsigned int blocks,
                cudaStream_t s) {
  strided_copy_kernel<T><<<blocks, 256, 0, s>>>(static_cast<T*>(dst), static_cast<const T*>(src), l, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

namespace {

void copy_strided_on(cudaStream_t s, void* dst, DType dst_dtype, const Shape& dst_strides, const void* src,
                     DType src_dtype, const Shape& src_strides, const Shape& shape) {
  const int64_t n = shape_numel(shape);
  const StridedLayout l = make_layout(shape, dst_strides, src_strides);
  const unsigned int blocks = std::min<unsigned int>(ceil_div(n, 256), 65535u);
  if (dst_dtype != src_dtype) {
    convert_copy_kernel<<<blocks, 256, 0, s>>>(dst, dst_dtype, src, src_dtype, l, n);
    CUDA_CHECK_LAUNCH();
    return;
  }
  if (l.ndim == 1 && l.dst_stride[0] == 1 && l.src_stride[0] == 1) {  // contiguous runs: plain copy
    CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dtype_size(dst_dtype),
                               cudaMemcpyDeviceToDevice, s));
    return;
  }
  switch (dtype_size(dst_dtype)) {
    case 1:
      launch_raw<uint8_t>(dst, src, l, n, blocks, s);
      break;
    case 2:
      launch_raw<uint16_t>(dst, src, l, n, blocks, s);
      break;
    case 4:
      launch_raw<uint32_t>(dst, src, l, n, blocks, s);
      break;
    case 8:
      launch_raw<uint64_t>(dst, src, l, n, blocks, s);
      break;
    default:
      MAMBA_CHECK(false, "element size " << dtype_size(dst_dtype));
  }
}

}  // namespace

void copy_strided(void* dst, DType dst_dtype, const Shape& dst_strides, const void* src, DType src_dtype,
                  const Shape& src_strides, const Shape& shape) {
  if (shape_numel(shape) == 0) return;
  // With no context bound: after all queued work on the legacy stream, waited for (as copy_bytes).
  const cudaStream_t s = bound_stream();
  if (!s) CUDA_CHECK(cudaDeviceSynchronize());
  copy_strided_on(s, dst, dst_dtype, dst_strides, src, src_dtype, src_strides, shape);
  if (!s) CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace mamba::cuda
