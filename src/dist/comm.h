// Collectives between the ranks of a data-parallel run: one process per rank (per GPU on CUDA),
// the same binary everywhere. A Communicator is made once per process from a DistConfig, which
// apps/cli fills from the launcher's or mpirun's environment (nothing below apps/ reads it).
//
//   dist::DistConfig c{.rank = 1, .size = 4, .addr = "127.0.0.1", .port = 29500};
//   auto comm = dist::make_communicator(c, Device::cpu);
//   comm->all_reduce_sum(grad_bucket);  // in place; every rank ends with the same sum
//
// Backends (the factory picks by device and size):
//  - single: size 1, every collective is a no-op (copy where in/out differ);
//  - socket: CPU processes over TCP to rank 0 (a star). Rank 0 adds the ranks' buffers element by
//    element in rank order ((x0 + x1) + x2) + ..., so a result never depends on timing; CUDA
//    tensors are staged through the host. For tests, CPU training and NCCL's bootstrap;
//  - nccl: CUDA tensors through NCCL (compiled only in the CUDA build, nccl_backend_cuda.cpp),
//    its ncclUniqueId sent from rank 0 over a socket communicator.
// Every rank must call the same collectives in the same order with the same sizes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mamba::dist {

struct DistConfig {
  int rank = 0, size = 1;
  int local_rank = 0;              // rank within the host: its GPU index
  std::string addr = "127.0.0.1";  // rank 0's address (the rendezvous)
  int port = 29500;                // rank 0's TCP port
  double timeout_s = 60;           // connecting and waiting for a peer's data
  std::string backend = "auto";    // auto (nccl for CUDA, socket for CPU), socket or nccl
};

class Communicator {
public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "single", "socket", "nccl"

  // t ← Σ over ranks of t, in place, on any device this backend serves. f32 tensors add as
  // float; f64 values travel, as elsewhere in the project (ops::sum_squares_total), in i64
  // tensors whose 8-byte slots hold doubles (core has no f64 dtype), and add as double.
  virtual void all_reduce_sum(Tensor& t) = 0;
  // out ← rank r's slice [r·n, (r+1)·n) of Σ over ranks of in, where n = out.numel() and
  // in.numel() = size·n; dtypes as all_reduce_sum. `out` may be that slice of `in` itself.
  virtual void reduce_scatter_sum(const Tensor& in, Tensor& out) = 0;
  // out[r·n, (r+1)·n) ← rank r's in, n = in.numel(), out.numel() = size·n. `in` may be rank r's
  // slice of `out` itself.
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  // all_gather and broadcast move bytes: any dtype. t ← root's t on every rank.
  virtual void broadcast(Tensor& t, int root = 0) = 0;
  virtual void barrier() = 0;

  // Host doubles summed over ranks (loss sums, counts): all_reduce_sum on a host tensor.
  std::vector<double> all_reduce_sum(std::vector<double> values);
};

// The communicator for `config` and tensors on `device`: single when size is 1 (unless backend
// is "nccl"), else socket on the CPU and nccl on CUDA (backend "socket" forces the socket one on
// CUDA too). Throws
// Error(invalid_argument) for a bad rank/size, Error(io) when the rendezvous fails (naming the
// address, the port and the rank that did not come) and Error(unsupported) for nccl in a build
// without CUDA.
std::unique_ptr<Communicator> make_communicator(const DistConfig& config, Device device);

// The socket communicator itself (tests; the NCCL bootstrap).
std::unique_ptr<Communicator> make_socket_communicator(const DistConfig& config);

// A TCP port free on 127.0.0.1 now (the kernel's pick; rank 0 binds it again a moment later), for
// the one-host launcher and the tests. Throws Error(io) when none can be had.
int free_loopback_port();

}  // namespace mamba::dist
