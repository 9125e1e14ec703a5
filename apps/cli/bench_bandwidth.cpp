// Memory read bandwidth (bench_bandwidth.h): 64-byte vector loads with a software prefetch 512
// bytes ahead (the hardware prefetchers stop at 4 KiB page boundaries).
#include "bench_bandwidth.h"

#include <mambacpp/mambacpp.h>
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace mambacpp::cli {

namespace {

constexpr size_t kHuge = size_t{2} << 20;

// An anonymous mapping of whole huge pages, advised into 2 MiB or 4 KiB pages, filled.
struct Region {
  char* base = nullptr;
  size_t bytes = 0;
  Region(size_t n, bool huge) : bytes((n + kHuge - 1) / kHuge * kHuge) {
    void* p = ::mmap(nullptr, bytes + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_error(ErrorCode::io, "bench --bandwidth: cannot map ", bytes, " bytes");
    mapped = static_cast<char*>(p);
    base = mapped + (kHuge - reinterpret_cast<uintptr_t>(mapped) % kHuge) % kHuge;
    ::madvise(base, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::memset(base, 1, bytes);  // fault every page in before the clock
  }
  ~Region() { ::munmap(mapped, bytes + kHuge); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

private:
  char* mapped = nullptr;
};

// Sum of the 64-bit words of [p, p + n) (n a multiple of 128 bytes) in two 64-byte vectors (the
// target's widest loads; scalar words issued too slowly to keep a core's misses in flight).
using V8 = uint64_t __attribute__((vector_size(64)));
uint64_t stream_sum(const char* p, size_t n) {
  V8 s0 = {}, s1 = {};
  for (size_t i = 0; i < n; i += 128) {
    __builtin_prefetch(p + i + 512);
    V8 w0, w1;
    std::memcpy(&w0, p + i, 64);
    std::memcpy(&w1, p + i + 64, 64);
    s0 += w0;
    s1 += w1;
  }
  const V8 s = s0 + s1;
  uint64_t total = 0;
  for (int k = 0; k < 8; ++k) total += s[k];
  return total;
}

double best_gbs(const Region& r, int threads, int64_t repeat) {
  set_num_threads(threads);
  double best = 0;
  volatile uint64_t sink = 0;
  for (int64_t rep = 0; rep < repeat; ++rep) {
    uint64_t total = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int n = omp_get_num_threads(), id = omp_get_thread_num();
      const size_t share = r.bytes / static_cast<size_t>(n) / 128 * 128;
      total += stream_sum(r.base + static_cast<size_t>(id) * share, share);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    best = std::max(best, static_cast<double>(r.bytes) / s / 1e9);
  }
  return best;
}

size_t default_bytes() {
  long llc = 0;
#if defined(_SC_LEVEL3_CACHE_SIZE)
  llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
  return std::max<size_t>(size_t{1} << 30, 4 * static_cast<size_t>(std::max(llc, 0L)));
}

}  // namespace

int bench_bandwidth(const std::vector<int>& threads, int64_t mib, int64_t repeat) {
  const size_t bytes = mib > 0 ? static_cast<size_t>(mib) << 20 : default_bytes();
  std::printf(
      "mambacpp bench --bandwidth: %zu MiB read once per pass, each thread its own contiguous share;\n"
      "best of %lld passes (GB/s = 1e9 bytes/s)\n\n| threads | 4 KiB pages GB/s | 2 MiB pages GB/s |\n"
      "|--------:|-----------------:|-----------------:|\n",
      bytes >> 20, static_cast<long long>(repeat));
  std::fflush(stdout);
  const Region small(bytes, false), huge(bytes, true);
  for (int t : threads) {
    const double a = best_gbs(small, t, repeat), b = best_gbs(huge, t, repeat);
    std::printf("| %7d | %16.1f | %16.1f |\n", t, a, b);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace mambacpp::cli
