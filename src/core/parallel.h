// Threading: OpenMP for our loops, OpenBLAS for GEMMs; `set_num_threads` sets both.
#pragma once
#include <cstdint>

namespace mamba {

void set_num_threads(int n);  // n <= 0: all cores
int num_threads();

// Runs fn(i) for i in [0, n) across the thread pool (static schedule).
template <typename Fn>
void parallel_for(int64_t n, Fn&& fn) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace mamba
