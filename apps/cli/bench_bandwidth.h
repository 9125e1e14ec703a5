// `mambacpp bench --bandwidth` (bench_bandwidth.cpp): the machine's memory read bandwidth at each
// thread count, the roof a decode step that streams every weight once runs against.
#pragma once
#include <cstdint>
#include <vector>

namespace mambacpp::cli {

// Reads a buffer of `mib` MiB (0: four times the last-level cache, at least 1 GiB) with each thread
// streaming its own contiguous share, in 4 KiB and in 2 MiB pages, best of `repeat` passes; prints
// a table of GB/s per thread count. Returns 0.
int bench_bandwidth(const std::vector<int>& threads, int64_t mib, int64_t repeat);

}  // namespace mambacpp::cli
