// mambacpp public API: Tensor, a typed, strided view of a reference-counted buffer (shapes in
// PyTorch order), and the array files a model's inputs and outputs travel in (.npy,
// .safetensors). Copies are explicit (copy_from, to); views (slice, select, view) share the buffer.
#pragma once
#include <mambacpp/common.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mambacpp {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);  // "[2, 3]"

class Tensor {
public:
  Tensor();
  ~Tensor();
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;

  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, float value);  // f32 on the CPU

  bool defined() const;
  DType dtype() const;
  Device device() const;
  const Shape& shape() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  size_t nbytes() const;

  // Host data (CPU tensors): raw bytes, or typed (f32() checks the dtype).
  void* raw() const;
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }
  float* f32() const;

  Tensor view(const Shape& shape) const;  // contiguous tensors; one -1 entry is inferred
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops dim
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  void copy_from(const Tensor& src);  // same shape; converts dtype; any strides

  struct Impl;
  const Impl& impl() const { return *impl_; }
  explicit Tensor(std::unique_ptr<Impl> impl);

private:
  std::unique_ptr<Impl> impl_;
};

// NumPy .npy files (f32, f16, i64, i32, u8 ...).
Tensor read_npy(const std::string& path);
void write_npy(const std::string& path, const Tensor& tensor);
// A .safetensors file of named tensors (through the host), with string metadata.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mambacpp
