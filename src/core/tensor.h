// Tensor: a typed, strided view of a reference-counted buffer. Shapes are in PyTorch order
// (outermost first); strides are in elements. Copies are explicit (`copy()`, `to()`); views
// (`view`, `slice`, `select`) share the buffer.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace mamba {

enum class Device { cpu, cuda };

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "[2, 3]"
int64_t shape_numel(const Shape& shape);

// A block of memory on a device. Either owned (allocated here) or borrowed (e.g. an mmap),
// in which case `keep_alive` holds whatever owns the bytes.
class Buffer {
public:
  static std::shared_ptr<Buffer> allocate(size_t bytes, Device device = Device::cpu);
  static std::shared_ptr<Buffer> borrow(void* data, size_t bytes, std::shared_ptr<void> keep_alive);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

private:
  Buffer() = default;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::cpu;
  bool owned_ = false;
  size_t mapped_ = 0;  // > 0: a CPU block of its own pages, this long (tensor.cpp)
  std::shared_ptr<void> keep_alive_;
};

// Hooks a device backend installs (the CUDA backend registers itself at start-up); core
// itself knows no device API.
struct DeviceAllocator {
  std::function<void*(size_t)> alloc;
  std::function<void(void*)> free;
  std::function<void(void* dst, Device dst_dev, const void* src, Device src_dev, size_t)> copy;
  // Element-wise copy within the device between two strided layouts of `shape` (strides in
  // elements), converting dtype when they differ: Tensor::copy_from / contiguous() on the device.
  std::function<void(void* dst, DType dst_dtype, const Shape& dst_strides, const void* src, DType src_dtype,
                     const Shape& src_strides, const Shape& shape)>
      copy_strided;
  // Sets `bytes` bytes at `dst` to zero on the device (stream-ordered; Tensor::zero()).
  std::function<void(void* dst, size_t bytes)> zero;
};
void register_device_allocator(Device device, DeviceAllocator allocator);
const DeviceAllocator* device_allocator(Device device);

class Tensor {
public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_buffer(std::shared_ptr<Buffer> buffer, size_t byte_offset, const Shape& shape,
                            DType dtype);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);

  bool defined() const { return buffer_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return buffer_ ? buffer_->device() : Device::cpu; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return dtype_bytes(dtype_, numel()); }
  bool is_contiguous() const;
  // The storage this tensor views and where its first element lies in it (adjacent views of one
  // buffer can be joined without a copy: stack_rows).
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }
  size_t byte_offset() const { return offset_; }

  void* raw() const;
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }
  // Typed f32 access with a dtype check (the common case in CPU kernels).
  float* f32() const;

  // Views (share the buffer). `view` needs a contiguous tensor; one -1 entry is inferred.
  Tensor view(const Shape& shape) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;  // [start, end) along dim
  Tensor select(int64_t dim, int64_t index) const;              // drops dim
  Tensor transpose(int64_t d0, int64_t d1) const;

  // Explicit copies.
  Tensor contiguous() const;  // returns *this if already contiguous
  Tensor copy() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  void copy_from(const Tensor& src);  // same shape; converts dtype; handles strides
  void fill(float value);
  void zero();

  std::vector<float> to_vector() const;  // any dtype, any layout, CPU -> f32 values

private:
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;  // bytes
  DType dtype_ = DType::f32;
  Shape shape_;
  Shape strides_;
};

}  // namespace mamba
