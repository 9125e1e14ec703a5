// The public vocabulary (common.h) and Tensor (tensor.h) over core/, io/ and ops/.
#include <utility>

#include "core/checked.h"
#include "core/file_util.h"
#include "core/parallel.h"
#include "internal.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "ops/device.h"

namespace mambacpp {

const char* dtype_name(DType dtype) {
  return mamba::dtype_name(to_internal(dtype));
}
Device parse_device(const std::string& name) {
  return guard([&] { return to_public(mamba::ops::parse_device(name)); });
}
bool device_available(Device device) {
  return mamba::ops::device_available(to_internal(device));
}
std::string device_description(Device device) {
  return guard([&] { return mamba::ops::device_description(to_internal(device)); });
}
void device_synchronize(Device device) {
  guard([&] { mamba::ops::device_synchronize(to_internal(device)); });
}
DeviceMemory device_memory(Device device) {
  const mamba::ops::DeviceMemory m = mamba::ops::device_memory(to_internal(device));
  return {m.in_use, m.peak};
}
void reset_device_memory_peak(Device device) {
  mamba::ops::reset_device_memory_peak(to_internal(device));
}
void set_num_threads(int n) {
  mamba::set_num_threads(n);
}
int num_threads() {
  return mamba::num_threads();
}
void set_memory_ceiling(uint64_t bytes) {
  mamba::set_memory_ceiling(bytes);
}
uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  return guard([&] { return mamba::parse_byte_size(text, what); });
}
std::string read_file(const std::string& path) {
  return guard([&] { return mamba::read_file(path); });
}
void write_file_atomic(const std::string& path, const std::string& contents) {
  guard([&] { mamba::write_file_atomic(path, contents); });
}
bool file_exists(const std::string& path) {
  return mamba::file_exists(path);
}
std::string path_join(const std::string& dir, const std::string& name) {
  return mamba::path_join(dir, name);
}

KernelPlan::KernelPlan() : impl_(std::make_unique<Impl>()) {}
KernelPlan::~KernelPlan() = default;
KernelPlan::KernelPlan(const KernelPlan& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
KernelPlan& KernelPlan::operator=(const KernelPlan& other) {
  *impl_ = *other.impl_;
  return *this;
}
void KernelPlan::set(const std::string& assignment) {
  guard([&] { impl_->plan.set(assignment); });
}
std::string KernelPlan::describe() const {
  return impl_->plan.describe();
}
std::string KernelPlan::to_json() const {
  return impl_->plan.to_json();
}

Context::Context(Device device, const KernelPlan& plan)
    : impl_(guard([&] { return std::make_unique<Impl>(to_internal(device), plan.impl().plan); })) {}
Context::~Context() = default;
Device Context::device() const {
  return to_public(impl_->exec.device());
}
void Context::set_profiling(bool on) {
  impl_->exec.set_profiling(on);
}
void Context::synchronize() {
  impl_->exec.synchronize();
}

std::string op_profile_report() {
  return mamba::ops::op_profile_report();
}
void op_profile_reset() {
  mamba::ops::op_profile_reset();
}

// Tensor: a handle on the internal tensor (itself a view of a shared buffer).
std::string shape_str(const Shape& shape) {
  return mamba::shape_str(shape);
}
Tensor::Tensor() : impl_(std::make_unique<Impl>()) {}
Tensor::Tensor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tensor::~Tensor() = default;
Tensor::Tensor(const Tensor& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Tensor& Tensor::operator=(const Tensor& other) {
  *impl_ = *other.impl_;
  return *this;
}
Tensor::Tensor(Tensor&& other) noexcept : impl_(std::make_unique<Impl>(std::move(*other.impl_))) {}
Tensor& Tensor::operator=(Tensor&& other) noexcept {
  impl_->t = std::move(other.impl_->t);
  return *this;
}
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return guard([&] { return wrap(mamba::Tensor::empty(shape, to_internal(dtype), to_internal(device))); });
}
Tensor Tensor::full(const Shape& shape, float value) {
  return guard([&] { return wrap(mamba::Tensor::full(shape, value)); });
}
bool Tensor::defined() const {
  return impl_->t.defined();
}
DType Tensor::dtype() const {
  return to_public(impl_->t.dtype());
}
Device Tensor::device() const {
  return to_public(impl_->t.device());
}
const Shape& Tensor::shape() const {
  return impl_->t.shape();
}
int64_t Tensor::dim() const {
  return impl_->t.dim();
}
int64_t Tensor::size(int64_t d) const {
  return impl_->t.size(d);
}
int64_t Tensor::numel() const {
  return impl_->t.numel();
}
size_t Tensor::nbytes() const {
  return impl_->t.nbytes();
}
void* Tensor::raw() const {
  return impl_->t.raw();
}
float* Tensor::f32() const {
  return impl_->t.f32();
}
Tensor Tensor::view(const Shape& shape) const {
  return guard([&] { return wrap(impl_->t.view(shape)); });
}
Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end) const {
  return guard([&] { return wrap(impl_->t.slice(dim, start, end)); });
}
Tensor Tensor::select(int64_t dim, int64_t index) const {
  return guard([&] { return wrap(impl_->t.select(dim, index)); });
}
Tensor Tensor::contiguous() const {
  return guard([&] { return wrap(impl_->t.contiguous()); });
}
Tensor Tensor::to(DType dtype) const {
  return guard([&] { return wrap(impl_->t.to(to_internal(dtype))); });
}
Tensor Tensor::to(Device device) const {
  return guard([&] { return wrap(impl_->t.to(to_internal(device))); });
}
void Tensor::copy_from(const Tensor& src) {
  guard([&] { impl_->t.copy_from(src.impl_->t); });
}

Tensor read_npy(const std::string& path) {
  return guard([&] { return wrap(mamba::io::read_npy(path)); });
}
void write_npy(const std::string& path, const Tensor& tensor) {
  guard([&] { mamba::io::write_npy(path, unwrap(tensor)); });
}
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, mamba::Tensor>> inner;
  inner.reserve(tensors.size());
  for (const auto& [name, t] : tensors) inner.emplace_back(name, unwrap(t));
  guard([&] { mamba::io::save_safetensors(path, inner, metadata); });
}

}  // namespace mambacpp
