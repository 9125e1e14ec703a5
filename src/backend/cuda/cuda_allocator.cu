// Device::cuda memory for core's Buffer: a caching allocator over cudaMalloc (decode allocates the
// same sizes every token; after the first token it never reaches cudaMalloc), plain and strided
// copies. Blocks freed by the host are reused at once: all work runs in order on one stream.
#include <map>
#include <mutex>
#include <unordered_map>

#include "backend/cuda/cuda_context.h"
#include "core/error.h"

namespace mamba::cuda {

namespace {

// Sizes are rounded so that nearby requests share blocks: 512 B granules below 1 MiB, 1 MiB
// granules above; a cached block is reused for a request of at least half its size.
size_t round_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(1) << 20;
  return bytes < kLarge ? (bytes + kSmall - 1) / kSmall * kSmall : (bytes + kLarge - 1) / kLarge * kLarge;
}

class CachingAllocator {
public:
  void* alloc(size_t bytes) {
    const size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= 2 * size) {
      void* p = it->second;
      live_[p] = it->first;
      allocated_ += it->first;
      cached_ -= it->first;
      free_.erase(it);
      return p;
    }
    (void)stream();  // creates the context (and checks that a device exists) first
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      (void)cudaGetLastError();
      release_cache_locked();
      err = cudaMalloc(&p, size);
    }
    CUDA_CHECK(err);
    live_[p] = size;
    allocated_ += size;
    return p;
  }

  void free(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    MAMBA_CHECK(it != live_.end(), "freeing a pointer the CUDA allocator did not hand out");
    free_.emplace(it->second, p);
    allocated_ -= it->second;
    cached_ += it->second;
    live_.erase(it);
  }

  size_t allocated() {
    std::lock_guard<std::mutex> lock(mutex_);
    return allocated_;
  }
  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

private:
  void release_cache_locked() {
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    for (auto& [size, p] : free_) CUDA_CHECK(cudaFree(p));
    free_.clear();
    cached_ = 0;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;       // size -> block, best fit by lower_bound
  std::unordered_map<void*, size_t> live_;  // block -> size
  size_t allocated_ = 0, cached_ = 0;
};

// Never destroyed (see context()).
CachingAllocator& allocator() {
  static auto* a = new CachingAllocator();
  return *a;
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream()));
  // The host reads (or may free) its side right after: wait for device -> host copies. A pageable
  // host -> device copy has been staged by the time cudaMemcpyAsync returns.
  if (dst_dev == Device::cpu) CUDA_CHECK(cudaStreamSynchronize(stream()));
  (void)src_dev;
}

}  // namespace

void register_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    DeviceAllocator a;
    a.alloc = [](size_t bytes) { return allocator().alloc(bytes); };
    a.free = [](void* p) { allocator().free(p); };
    a.copy = copy_bytes;
    a.copy_strided = copy_strided;
    register_device_allocator(Device::cuda, std::move(a));
  });
}

size_t allocated_bytes() {
  return allocator().allocated();
}
size_t cached_bytes() {
  return allocator().cached();
}

}  // namespace mamba::cuda
