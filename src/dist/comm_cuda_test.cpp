// The NCCL backend on one GPU: a one-rank NCCL communicator (asked for by name), whose collectives
// are copies, but every call, dtype mapping, in-place use and the unique-id bootstrap run through
// NCCL, against the naive sums. Skipped without a CUDA device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "dist/comm.h"
#include "ops/device.h"

namespace mamba::dist {
namespace {

float value(int r, int64_t i) {
  return static_cast<float>(r + 1) + static_cast<float>(i % 31) * 0.0625f;
}

// Checks on one rank; returns the number of failed checks (0 = all held).
int rank_body(int rank, int n, int port) {
  int bad = 0;
  DistConfig c;
  c.rank = rank;
  c.size = n;
  c.local_rank = rank;
  c.port = port;
  c.backend = "nccl";
  const auto comm = make_communicator(c, Device::cuda);
  bad += comm->name() != "nccl";
  const int64_t part = 1001;
  Tensor host = Tensor::empty({part * n});
  for (int64_t i = 0; i < part * n; ++i) host.f32()[i] = value(rank, i);
  auto sum = [&](int64_t i) {
    float s = 0;
    for (int r = 0; r < n; ++r) s += value(r, i);  // small integers and sixteenths: exact in any order
    return s;
  };
  Tensor t = host.to(Device::cuda);
  comm->all_reduce_sum(t);
  std::vector<float> got = t.to_vector();
  for (int64_t i = 0; i < part * n; ++i) bad += got[static_cast<size_t>(i)] != sum(i);
  Tensor in = host.to(Device::cuda), out = Tensor::zeros({part}, DType::f32, Device::cuda);
  comm->reduce_scatter_sum(in, out);
  got = out.to_vector();
  for (int64_t i = 0; i < part; ++i) bad += got[static_cast<size_t>(i)] != sum(rank * part + i);
  Tensor full = Tensor::zeros({part * n}, DType::f32, Device::cuda);
  comm->all_gather(host.slice(0, 0, part).to(Device::cuda), full);
  got = full.to_vector();
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < part; ++i) bad += got[static_cast<size_t>(r * part + i)] != value(r, i);
  Tensor b = host.to(Device::cuda);
  comm->broadcast(b, n - 1);
  got = b.to_vector();
  for (int64_t i = 0; i < part * n; ++i) bad += got[static_cast<size_t>(i)] != value(n - 1, i);
  // Doubles in 8-byte slots, as the trainer's gradient norm.
  Tensor d = Tensor::empty({3}, DType::i64);
  double* p = static_cast<double*>(d.raw());
  for (int i = 0; i < 3; ++i) p[i] = 0.5 * (rank + 1) + i;
  Tensor dd = d.to(Device::cuda);
  comm->all_reduce_sum(dd);
  const Tensor back = dd.to(Device::cpu);
  for (int i = 0; i < 3; ++i) {
    double want = 0;
    for (int r = 0; r < n; ++r) want += 0.5 * (r + 1) + i;
    bad += static_cast<const double*>(back.raw())[i] != want;
  }
  comm->barrier();
  return bad;
}

// One rank on this process's GPU (forking after CUDA is initialized is not allowed, and the
// multi-GPU runs go through `mambacpp train --gpus N`: scripts/dist_gpu_check.sh).
TEST(NcclComm, OneRankCollectivesRunThroughNccl) {
  if (!ops::device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(rank_body(0, 1, free_loopback_port()), 0);
}

}  // namespace
}  // namespace mamba::dist
