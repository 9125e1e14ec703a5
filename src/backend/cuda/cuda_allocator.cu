// Device::cuda memory for core's Buffer: a caching allocator over cudaMalloc (decode allocates the
// same sizes every token; after the first token it never reaches cudaMalloc), plain and strided
// copies. Blocks freed by the host are reused at once: all work runs in order on one stream.
// While a CUDA graph is captured (cuda_graph.cu), every block handed out or freed joins that
// graph's private pool: its replays write those addresses, so no one else may get them until the
// graph is released.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

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
    if (capturing_ != 0) {  // the capture's own freed blocks first, then the shared cache
      if (void* p = take_locked(pools_[capturing_], size)) return p;
      if (void* p = take_locked(free_, size)) {
        owner_[p] = capturing_;
        return p;
      }
    } else if (void* p = take_locked(free_, size)) {
      return p;
    }
    (void)stream();  // creates the context (and checks that a device exists) first
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation && capturing_ == 0) {  // give the cache back, try once more
      (void)cudaGetLastError();
      release_cache_locked();
      err = cudaMalloc(&p, size);
    }
    CUDA_CHECK(err);
    live_[p] = size;
    allocated_ += size;
    if (capturing_ != 0) owner_[p] = capturing_;
    return p;
  }

  void free(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    MAMBA_CHECK(it != live_.end(), "freeing a pointer the CUDA allocator did not hand out");
    // A graph's block goes back to its pool; a block freed during a capture was used by the
    // captured work, so it joins the capture's pool too.
    auto own = owner_.find(p);
    if (own == owner_.end() && capturing_ != 0) own = owner_.emplace(p, capturing_).first;
    (own != owner_.end() ? pools_[own->second] : free_).emplace(it->second, p);
    allocated_ -= it->second;
    cached_ += it->second;
    live_.erase(it);
  }

  int begin_capture() {
    std::lock_guard<std::mutex> lock(mutex_);
    MAMBA_CHECK(capturing_ == 0, "nested CUDA graph captures");
    capturing_ = next_pool_++;
    pools_[capturing_];
    return capturing_;
  }

  void end_capture() {
    std::lock_guard<std::mutex> lock(mutex_);
    capturing_ = 0;
  }

  // The graph is gone (its replays are queued before any later work on the stream): its blocks
  // return to the shared cache, those still held by tensors when they are freed.
  void release_pool(int pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pools_.find(pool);
    if (it == pools_.end()) return;
    for (auto& [size, p] : it->second) free_.emplace(size, p);
    pools_.erase(it);
    std::vector<void*> mine;
    for (auto& [p, id] : owner_)
      if (id == pool) mine.push_back(p);
    for (void* p : mine) owner_.erase(p);
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
  using FreeList = std::multimap<size_t, void*>;  // size -> block, best fit by lower_bound

  void* take_locked(FreeList& list, size_t size) {
    auto it = list.lower_bound(size);
    if (it == list.end() || it->first > 2 * size) return nullptr;
    void* p = it->second;
    live_[p] = it->first;
    allocated_ += it->first;
    cached_ -= it->first;
    list.erase(it);
    return p;
  }

  void release_cache_locked() {
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    for (auto& [size, p] : free_) {
      CUDA_CHECK(cudaFree(p));
      cached_ -= size;  // graph pools keep theirs
    }
    free_.clear();
  }

  std::mutex mutex_;
  FreeList free_;                            // the shared cache
  std::unordered_map<void*, size_t> live_;   // block -> size
  std::unordered_map<int, FreeList> pools_;  // graph pool -> its free blocks
  std::unordered_map<void*, int> owner_;     // block -> graph pool, for blocks a graph uses
  int capturing_ = 0;                        // pool of the open capture, 0 when none
  int next_pool_ = 1;
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
    a.zero = [](void* dst, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream())); };
    register_device_allocator(Device::cuda, std::move(a));
  });
}

int begin_pool_capture() {
  return allocator().begin_capture();
}
void end_pool_capture() {
  allocator().end_capture();
}
void release_pool(int pool) {
  allocator().release_pool(pool);
}

size_t allocated_bytes() {
  return allocator().allocated();
}
size_t cached_bytes() {
  return allocator().cached();
}

}  // namespace mamba::cuda
