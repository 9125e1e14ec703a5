// Device::cuda memory for core's Buffer: a caching allocator over cudaMalloc (decode allocates the
// same sizes every token; after the first token it never reaches cudaMalloc), plain and strided
// copies. Several streams (one per ops::Exec) share it: every block is tagged with the stream that
// was bound when it was allocated (null: none bound), and a freed block goes back to that
// stream's free list and is handed out again only to work on the same stream, where it is ordered
// after every earlier use, so the host may reuse it at once without waiting. Work with no stream
// bound waits for the whole device first (copy_bytes, zero), so the unbound list is safe too.
// A block used on a stream other than its own must be waited for before it is freed (the Exec
// threading contract). A context's end (retire_stream) synchronizes its stream and moves its
// blocks to the unbound list.
// While a CUDA graph is captured on a stream (cuda_graph.cu), every block handed out or freed on
// that stream joins the graph's private pool: its replays write those addresses, so no one else
// may get them until the graph is released.
#include <algorithm>
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
    const cudaStream_t s = bound_stream();  // creates the bound context first
    std::lock_guard<std::mutex> lock(mutex_);
    const int capture = capture_of_locked(s);
    if (capture != 0) {  // the capture's own freed blocks first, then the stream's cache
      if (void* p = take_locked(pools_[capture], size, s)) return p;
      if (void* p = take_locked(free_[s], size, s)) {
        owner_[p] = capture;
        return p;
      }
    } else if (void* p = take_locked(free_[s], size, s)) {
      return p;
    }
    if (!s && !available()) throw_error(ErrorCode::unsupported, "no CUDA device found");
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation && capture == 0) {  // give the cache back, try once more
      (void)cudaGetLastError();
      release_cache_locked();
      err = cudaMalloc(&p, size);
    }
    CUDA_CHECK(err);
    live_[p] = {size, s};
    allocated_ += size;
    peak_ = std::max(peak_, allocated_);
    if (capture != 0) owner_[p] = capture;
    return p;
  }

  void free(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    MAMBA_CHECK(it != live_.end(), "freeing a pointer the CUDA allocator did not hand out");
    const auto [size, s] = it->second;
    // A graph's block goes back to its pool; a block of the capturing stream freed during a
    // capture was used by the captured work, so it joins the capture's pool too.
    auto own = owner_.find(p);
    const int capture = capture_of_locked(s);
    if (own == owner_.end() && capture != 0) own = owner_.emplace(p, capture).first;
    if (own != owner_.end())
      pools_[own->second].emplace(size, Cached{p, s});
    else
      free_[s].emplace(size, Cached{p, s});
    allocated_ -= size;
    cached_ += size;
    live_.erase(it);
  }

  int begin_capture(cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mutex_);
    MAMBA_CHECK(capture_of_locked(s) == 0, "nested CUDA graph captures on one stream");
    const int pool = next_pool_++;
    capturing_[s] = pool;
    pools_[pool];
    return pool;
  }

  void end_capture(cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mutex_);
    capturing_.erase(s);
  }

  // The graph is gone (its replays are queued before any later work on its stream): its blocks
  // return to their streams' caches, those still held by tensors when they are freed.
  void release_pool(int pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pools_.find(pool);
    if (it == pools_.end()) return;
    for (auto& [size, c] : it->second) free_[c.stream].emplace(size, c);
    pools_.erase(it);
    std::vector<void*> mine;
    for (auto& [p, id] : owner_)
      if (id == pool) mine.push_back(p);
    for (void* p : mine) owner_.erase(p);
  }

  // The stream's context ends (its work is done): its free and live blocks become unbound ones.
  void retire_stream(cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(s);
    if (it != free_.end()) {
      for (auto& [size, c] : it->second) free_[nullptr].emplace(size, Cached{c.ptr, nullptr});
      free_.erase(s);
    }
    for (auto& [p, block] : live_)
      if (block.stream == s) block.stream = nullptr;
    for (auto& [pool, list] : pools_)
      for (auto& [size, c] : list)
        if (c.stream == s) c.stream = nullptr;
    capturing_.erase(s);
  }

  size_t allocated() {
    std::lock_guard<std::mutex> lock(mutex_);
    return allocated_;
  }
  size_t peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = allocated_;
  }
  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

private:
  struct Cached {
    void* ptr;
    cudaStream_t stream;  // the block's stream (null: unbound)
  };
  struct Live {
    size_t size;
    cudaStream_t stream;
  };
  using FreeList = std::multimap<size_t, Cached>;  // size -> block, best fit by lower_bound

  int capture_of_locked(cudaStream_t s) const {
    auto it = capturing_.find(s);
    return it == capturing_.end() ? 0 : it->second;
  }

  // A block of `list` for work on stream `s`: the list holds `s`'s blocks (a graph pool's may be
  // of its stream only, as captures run on one stream).
  void* take_locked(FreeList& list, size_t size, cudaStream_t s) {
    auto it = list.lower_bound(size);
    if (it == list.end() || it->first > 2 * size) return nullptr;
    void* p = it->second.ptr;
    live_[p] = {it->first, s};
    allocated_ += it->first;
    peak_ = std::max(peak_, allocated_);
    cached_ -= it->first;
    list.erase(it);
    return p;
  }

  // Out of memory: every stream's cached blocks go back to the driver after the device is idle.
  void release_cache_locked() {
    CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& [s, list] : free_)
      for (auto& [size, c] : list) {
        CUDA_CHECK(cudaFree(c.ptr));
        cached_ -= size;  // graph pools keep theirs
      }
    free_.clear();
  }

  std::mutex mutex_;
  std::unordered_map<cudaStream_t, FreeList> free_;  // each stream's cache (null: unbound)
  std::unordered_map<void*, Live> live_;             // block -> size, stream
  std::unordered_map<int, FreeList> pools_;          // graph pool -> its free blocks
  std::unordered_map<void*, int> owner_;             // block -> graph pool, for blocks a graph uses
  std::unordered_map<cudaStream_t, int> capturing_;  // stream -> pool of its open capture
  int next_pool_ = 1;
  size_t allocated_ = 0, cached_ = 0, peak_ = 0;
};

// Never destroyed (see context()).
CachingAllocator& allocator() {
  static auto* a = new CachingAllocator();
  return *a;
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t s = bound_stream();
  if (!s) {  // unbound: after all queued work, and waited for (no stream orders what follows)
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
    CUDA_CHECK(cudaDeviceSynchronize());
    return;
  }
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
  // The host reads (or may free) its side right after: wait for device -> host copies. A pageable
  // host -> device copy has been staged by the time cudaMemcpyAsync returns.
  if (dst_dev == Device::cpu) CUDA_CHECK(cudaStreamSynchronize(s));
  (void)src_dev;
}

void zero_bytes(void* dst, size_t bytes) {
  const cudaStream_t s = bound_stream();
  if (!s) {
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemset(dst, 0, bytes));
    CUDA_CHECK(cudaDeviceSynchronize());
    return;
  }
  CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, s));
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
    a.zero = zero_bytes;
    register_device_allocator(Device::cuda, std::move(a));
  });
}

int begin_pool_capture(cudaStream_t stream) {
  return allocator().begin_capture(stream);
}
void end_pool_capture(cudaStream_t stream) {
  allocator().end_capture(stream);
}
void retire_stream(cudaStream_t stream) {
  allocator().retire_stream(stream);
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
size_t peak_allocated_bytes() {
  return allocator().peak();
}
void reset_peak_allocated() {
  allocator().reset_peak();
}

}  // namespace mamba::cuda
