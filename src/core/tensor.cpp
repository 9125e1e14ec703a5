// Tensor and Buffer implementation (CPU side; device copies go through registered hooks).
#include "core/tensor.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/checked.h"
#include "core/error.h"

namespace mamba {

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MAMBA_LARGE_BLOCKS 0  // the sanitizers watch the heap: every tensor stays on it
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MAMBA_LARGE_BLOCKS 0
#endif
#endif
#if !defined(MAMBA_LARGE_BLOCKS) && defined(__linux__)
#define MAMBA_LARGE_BLOCKS 1
#elif !defined(MAMBA_LARGE_BLOCKS)
#define MAMBA_LARGE_BLOCKS 0
#endif

#if MAMBA_LARGE_BLOCKS
// CPU tensors of 256 KiB and more (a prefill chunk's activations) in pages of their own, each block
// kept when freed, up to kLargeCacheBytes in all, for the next request it fits (at most twice its
// size). From the heap, every layer's differently sized activations left holes the next layer
// could not reuse and the heap's resident set grew past the live set; from fresh pages alone each
// chunk paid its page faults and zeroing again (10-25% of a prefill). The same sizes recur:
// every layer of a kind and every prefill chunk asks for the same shapes.
constexpr size_t kLargeBlock = size_t{256} << 10, kLargeCacheBytes = size_t{64} << 20;
struct LargeBlocks {
  std::mutex mu;
  std::multimap<size_t, void*> free;  // by mapped size
  size_t cached = 0;
};
LargeBlocks& large_blocks() {
  static auto* blocks = new LargeBlocks;  // never destroyed: tensors in statics are freed after
  return *blocks;
}
// A block of at least `bytes`; `mapped` is its size, for large_free.
void* large_alloc(size_t bytes, size_t& mapped) {
  const size_t size = (bytes + 4095) / 4096 * 4096;
  LargeBlocks& lb = large_blocks();
  {
    const std::lock_guard<std::mutex> lock(lb.mu);
    auto it = lb.free.lower_bound(size);
    if (it != lb.free.end() && it->first <= 2 * size) {
      void* p = it->second;
      mapped = it->first;
      lb.cached -= it->first;
      lb.free.erase(it);
      return p;
    }
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  mapped = size;
  return p == MAP_FAILED ? nullptr : p;
}
void large_free(void* p, size_t mapped) {
  LargeBlocks& lb = large_blocks();
  {
    const std::lock_guard<std::mutex> lock(lb.mu);
    if (lb.cached + mapped <= kLargeCacheBytes) {
      lb.free.emplace(mapped, p);
      lb.cached += mapped;
      return;
    }
  }
  ::munmap(p, mapped);
}
#else
constexpr size_t kLargeBlock = std::numeric_limits<size_t>::max();
void* large_alloc(size_t, size_t&) {
  return nullptr;
}
void large_free(void*, size_t) {}
#endif

std::map<Device, DeviceAllocator>& allocators() {
  static std::map<Device, DeviceAllocator> table;
  return table;
}

// Row-major strides. A shape with a zero dimension holds nothing, yet the partial products of its
// other dimensions can pass 2^63 (a hostile file's (0, 4e9, 4e9)): those saturate instead of
// overflowing, as no element is ever addressed through them.
Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    if (__builtin_mul_overflow(s, shape[i], &s)) s = std::numeric_limits<int64_t>::max();
  }
  return strides;
}

float load_as_f32(const void* p, DType dtype) {
  switch (dtype) {
    case DType::f32:
      return *static_cast<const float*>(p);
    case DType::bf16:
      return bf16_to_f32(*static_cast<const uint16_t*>(p));
    case DType::f16:
      return f16_to_f32(*static_cast<const uint16_t*>(p));
    case DType::i64:
      return static_cast<float>(*static_cast<const int64_t*>(p));
    case DType::i32:
      return static_cast<float>(*static_cast<const int32_t*>(p));
    case DType::u8:
      return static_cast<float>(*static_cast<const uint8_t*>(p));
    case DType::q8_0:
    case DType::q4_0:
    case DType::q4_k:
    case DType::q6_k:
      break;
  }
  MAMBA_CHECK(false, "element access to a block-format tensor (" << dtype_name(dtype) << ")");
  return 0.0f;
}

void store_from_f32(void* p, DType dtype, float v) {
  switch (dtype) {
    case DType::f32:
      *static_cast<float*>(p) = v;
      break;
    case DType::bf16:
      *static_cast<uint16_t*>(p) = f32_to_bf16(v);
      break;
    case DType::f16:
      *static_cast<uint16_t*>(p) = f32_to_f16(v);
      break;
    // Out-of-range values saturate (NaN -> 0): a plain cast would be undefined behaviour.
    case DType::i64:
      *static_cast<int64_t*>(p) = v != v          ? 0
                                  : v >= 9.2e18f  ? INT64_MAX
                                  : v <= -9.2e18f ? INT64_MIN
                                                  : static_cast<int64_t>(v);
      break;
    case DType::i32:
      *static_cast<int32_t*>(p) = v != v                ? 0
                                  : v >= 2147483648.0f  ? INT32_MAX
                                  : v <= -2147483648.0f ? INT32_MIN
                                                        : static_cast<int32_t>(v);
      break;
    case DType::u8:
      *static_cast<uint8_t*>(p) = v != v ? 0 : v >= 255.0f ? 255 : v <= 0.0f ? 0 : static_cast<uint8_t>(v);
      break;
    case DType::q8_0:
    case DType::q4_0:
    case DType::q4_k:
    case DType::q6_k:
      MAMBA_CHECK(false, "element access to a block-format tensor (" << dtype_name(dtype) << ")");
      break;
  }
}

// Calls fn(linear_index, element_offset) for every element of a strided layout.
template <typename Fn>
void for_each_offset(const Shape& shape, const Shape& strides, Fn fn) {
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  std::vector<int64_t> idx(shape.size(), 0);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    fn(i, off);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}
}  // namespace

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    // A negative size or a product past 2^63 (a hostile config's dimensions) is an error, not UB.
    if (s < 0 || __builtin_mul_overflow(n, s, &n))
      throw_error(ErrorCode::shape, "tensor shape ", shape_str(shape),
                  " has a negative size or too many elements");
  }
  return n;
}

void register_device_allocator(Device device, DeviceAllocator allocator) {
  allocators()[device] = std::move(allocator);
}

const DeviceAllocator* device_allocator(Device device) {
  auto it = allocators().find(device);
  return it == allocators().end() ? nullptr : &it->second;
}

std::shared_ptr<Buffer> Buffer::allocate(size_t bytes, Device device) {
  std::shared_ptr<Buffer> buf(new Buffer());
  buf->bytes_ = bytes;
  buf->device_ = device;
  buf->owned_ = true;
  if (bytes > (size_t{1} << 62))
    throw_error(ErrorCode::out_of_range, "tensor allocation of ", bytes, " bytes");
  const size_t padded = ((bytes + 63) / 64) * 64 + 64;
  if (device == Device::cpu) {
    check_allocation(bytes, "tensor allocation");
    buf->data_ = padded >= kLargeBlock ? large_alloc(padded, buf->mapped_) : std::aligned_alloc(64, padded);
    if (!buf->data_) throw_error(ErrorCode::io, "out of memory allocating ", bytes, " bytes");
  } else {
    const DeviceAllocator* a = device_allocator(device);
    if (!a) throw_error(ErrorCode::unsupported, "this build has no CUDA backend");
    buf->data_ = a->alloc(padded);
  }
  return buf;
}

std::shared_ptr<Buffer> Buffer::borrow(void* data, size_t bytes, std::shared_ptr<void> keep_alive) {
  std::shared_ptr<Buffer> buf(new Buffer());
  buf->data_ = data;
  buf->bytes_ = bytes;
  buf->keep_alive_ = std::move(keep_alive);
  return buf;
}

Buffer::~Buffer() {
  if (!owned_ || !data_) return;
  if (device_ == Device::cpu) {
    if (mapped_ > 0)
      large_free(data_, mapped_);
    else
      std::free(data_);
  } else if (const DeviceAllocator* a = device_allocator(device_)) {
    a->free(data_);
  }
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) MAMBA_CHECK(s >= 0, "negative dimension in " << shape_str(shape));
  Tensor t;
  const int64_t n_values = shape_numel(shape);
  const uint64_t bytes = dtype_is_block(dtype)
                             ? static_cast<uint64_t>(dtype_bytes(dtype, n_values))
                             : checked_mul(static_cast<uint64_t>(n_values),
                                           static_cast<uint64_t>(dtype_size(dtype)), "tensor bytes");
  t.buffer_ = Buffer::allocate(static_cast<size_t>(bytes), device);
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill(value);
  return t;
}

Tensor Tensor::from_buffer(std::shared_ptr<Buffer> buffer, size_t byte_offset, const Shape& shape,
                           DType dtype) {
  Tensor t;
  MAMBA_CHECK(byte_offset + dtype_bytes(dtype, shape_numel(shape)) <= buffer->bytes());
  t.buffer_ = std::move(buffer);
  t.offset_ = byte_offset;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  MAMBA_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape));
  Tensor t = empty(shape);
  std::memcpy(t.raw(), values.data(), values.size() * 4);
  return t;
}

int64_t Tensor::size(int64_t d) const {
  if (d < 0) d += dim();
  MAMBA_CHECK(d >= 0 && d < dim(), "dim " << d << " of " << shape_str(shape_));
  return shape_[d];
}

int64_t Tensor::stride(int64_t d) const {
  if (d < 0) d += dim();
  MAMBA_CHECK(d >= 0 && d < dim());
  return strides_[d];
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] != 1 && strides_[i] != s) return false;
    s *= shape_[i];
  }
  return true;
}

void* Tensor::raw() const {
  MAMBA_CHECK(buffer_ != nullptr, "undefined tensor");
  return static_cast<char*>(buffer_->data()) + offset_;
}

float* Tensor::f32() const {
  MAMBA_CHECK(dtype_ == DType::f32, "expected f32, got " << dtype_name(dtype_));
  return data<float>();
}

Tensor Tensor::view(const Shape& shape) const {
  MAMBA_CHECK(is_contiguous(), "view of a non-contiguous tensor");
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MAMBA_CHECK(infer < 0, "two -1 in view");
      infer = static_cast<int64_t>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) s[infer] = known ? numel() / known : 0;
  MAMBA_CHECK(shape_numel(s) == numel(), "view " << shape_str(shape) << " of " << shape_str(shape_));
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
  if (d < 0) d += dim();
  MAMBA_CHECK(d >= 0 && d < dim() && 0 <= start && start <= end && end <= shape_[d],
              "slice dim " << d << " [" << start << "," << end << ") of " << shape_str(shape_));
  Tensor t = *this;
  t.offset_ += dtype_bytes(dtype_, start * strides_[d]);  // whole rows of blocks only
  t.shape_[d] = end - start;
  return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  if (d < 0) d += dim();
  Tensor t = slice(d, index, index + 1);
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (d0 < 0) d0 += dim();
  if (d1 < 0) d1 += dim();
  Tensor t = *this;
  std::swap(t.shape_[d0], t.shape_[d1]);
  std::swap(t.strides_[d0], t.strides_[d1]);
  return t;
}

Tensor Tensor::contiguous() const {
  return is_contiguous() ? *this : copy();
}

Tensor Tensor::copy() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor src = contiguous();
  Tensor t = empty(shape_, dtype_, device);
  const DeviceAllocator* a = device_allocator(device == Device::cpu ? src.device() : device);
  if (!a) throw_error(ErrorCode::unsupported, "this build has no CUDA backend");
  a->copy(t.raw(), device, src.raw(), src.device(), nbytes());
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  MAMBA_CHECK(src.shape_ == shape_, "copy_from " << shape_str(src.shape_) << " -> " << shape_str(shape_));
  if (device() != Device::cpu || src.device() != Device::cpu) {
    const DeviceAllocator* a = device_allocator(device() != Device::cpu ? device() : src.device());
    MAMBA_CHECK(a != nullptr);
    if (dtype_ == src.dtype_ && is_contiguous() && src.is_contiguous()) {
      a->copy(raw(), device(), src.raw(), src.device(), nbytes());
    } else if (device() != src.device()) {
      copy_from(src.to(device()));  // stage on this device, then convert/scatter there
    } else if (numel() > 0) {
      a->copy_strided(raw(), dtype_, strides_, src.raw(), src.dtype_, src.strides_, shape_);
    }
    return;
  }
  if (dtype_ == src.dtype_ && is_contiguous() && src.is_contiguous()) {
    std::memmove(raw(), src.raw(), nbytes());
    return;
  }
  const size_t ss = dtype_size(src.dtype_), ds = dtype_size(dtype_);
  const char* sbase = static_cast<const char*>(src.raw());
  char* dbase = static_cast<char*>(raw());
  // The same dtype with rows contiguous on both sides (a column slice made contiguous, as the
  // Mamba-2 mixer does for the scan's x / B / C): one memmove per row. Converting element by
  // element was 15% of a quantized prefill.
  if (dtype_ == src.dtype_ && !dtype_is_block(dtype_) && !shape_.empty() && shape_.back() > 1 &&
      strides_.back() == 1 && src.strides_.back() == 1) {
    const Shape outer(shape_.begin(), shape_.end() - 1);
    const Shape d_outer(strides_.begin(), strides_.end() - 1),
        s_outer(src.strides_.begin(), src.strides_.end() - 1);
    const size_t row_bytes = static_cast<size_t>(shape_.back()) * ds;
    std::vector<int64_t> doffs(static_cast<size_t>(shape_numel(outer)));
    for_each_offset(outer, d_outer, [&](int64_t i, int64_t off) { doffs[i] = off; });
    for_each_offset(outer, s_outer, [&](int64_t i, int64_t off) {
      std::memmove(dbase + doffs[i] * ds, sbase + off * ss, row_bytes);
    });
    return;
  }
  std::vector<int64_t> doffs(static_cast<size_t>(numel()));
  for_each_offset(shape_, strides_, [&](int64_t i, int64_t off) { doffs[i] = off; });
  for_each_offset(src.shape_, src.strides_, [&](int64_t i, int64_t off) {
    store_from_f32(dbase + doffs[i] * ds, dtype_, load_as_f32(sbase + off * ss, src.dtype_));
  });
}

void Tensor::fill(float value) {
  MAMBA_CHECK(device() == Device::cpu);
  const size_t ds = dtype_size(dtype_);
  char* base = static_cast<char*>(raw());
  for_each_offset(shape_, strides_,
                  [&](int64_t, int64_t off) { store_from_f32(base + off * ds, dtype_, value); });
}

void Tensor::zero() {
  if (is_contiguous() && device() == Device::cpu) {
    std::memset(raw(), 0, nbytes());
  } else if (device() == Device::cpu) {
    fill(0.0f);
  } else if (const DeviceAllocator* a = device_allocator(device()); a && a->zero && is_contiguous()) {
    a->zero(raw(), nbytes());
  } else {
    Tensor z = zeros(shape_, dtype_, Device::cpu);
    copy_from(z);
  }
}

std::vector<float> Tensor::to_vector() const {
  Tensor src = device() == Device::cpu ? *this : to(Device::cpu);
  std::vector<float> out(static_cast<size_t>(numel()));
  const size_t ss = dtype_size(dtype_);
  const char* base = static_cast<const char*>(src.raw());
  // A device tensor was made contiguous on its way to the host: read it with the copy's strides.
  for_each_offset(shape_, src.strides_,
                  [&](int64_t i, int64_t off) { out[i] = load_as_f32(base + off * ss, dtype_); });
  return out;
}

}  // namespace mamba
