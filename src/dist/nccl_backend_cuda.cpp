// NCCL collectives on CUDA tensors (see nccl_backend.h); compiled only in the CUDA build.
// Ordering with the compute: each collective first waits for the device (cudaDeviceSynchronize:
// the gradients come from the trainer's Exec stream, which this layer does not see), then runs on
// the communicator's own stream and waits for it. Correct and simple; overlapping the buckets
// with the backward needs the Exec's stream here (docs/distributed.md, what is left).
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "core/error.h"
#include "dist/nccl_backend.h"

namespace mamba::dist::nccl_backend {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_error(ErrorCode::io, "dist (nccl): ", what, ": ", cudaGetErrorString(e));
}
void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw_error(ErrorCode::io, "dist (nccl): ", what, ": ", ncclGetErrorString(r));
}

ncclDataType_t sum_type(const Tensor& t, const char* op) {
  if (t.dtype() == DType::f32) return ncclFloat32;
  if (t.dtype() == DType::i64) return ncclFloat64;  // 8-byte slots holding doubles (comm.h)
  throw_error(ErrorCode::dtype, op, ": expected f32 (or i64 slots holding doubles), found ",
              dtype_name(t.dtype()));
}

void check_device(const Tensor& t, const char* op) {
  if (t.device() != Device::cuda || !t.is_contiguous())
    throw_error(ErrorCode::invalid_argument, op, ": the nccl backend takes contiguous CUDA tensors");
}

class NcclCommunicator final : public Communicator {
public:
  NcclCommunicator(const DistConfig& c, std::unique_ptr<Communicator> bootstrap)
      : rank_(c.rank), size_(c.size), bootstrap_(std::move(bootstrap)) {
    check_cuda(cudaSetDevice(c.local_rank), "cudaSetDevice(local rank)");
    ncclUniqueId id{};
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    Tensor bytes = Tensor::empty({static_cast<int64_t>(sizeof id)}, DType::u8);
    std::memcpy(bytes.raw(), &id, sizeof id);
    bootstrap_->broadcast(bytes, 0);
    std::memcpy(&id, bytes.raw(), sizeof id);
    check_nccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclCommunicator() override {
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }

  // Host tensors (the step's statistics) go over the bootstrap's sockets.
  void all_reduce_sum(Tensor& t) override {
    if (t.device() == Device::cpu) return bootstrap_->all_reduce_sum(t);
    check_device(t, "all_reduce_sum");
    const ncclDataType_t type = sum_type(t, "all_reduce_sum");
    before();
    check_nccl(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), type, ncclSum, comm_, stream_),
               "ncclAllReduce");
    after();
  }

  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    if (in.device() == Device::cpu && out.device() == Device::cpu)
      return bootstrap_->reduce_scatter_sum(in, out);
    check_device(in, "reduce_scatter_sum");
    check_device(out, "reduce_scatter_sum");
    const ncclDataType_t type = sum_type(in, "reduce_scatter_sum");
    if (out.dtype() != in.dtype() || in.numel() != out.numel() * size_)
      throw_error(ErrorCode::shape, "reduce_scatter_sum: in has ", in.numel(), " elements, expected ", size_,
                  " x ", out.numel());
    before();
    check_nccl(ncclReduceScatter(in.raw(), out.raw(), static_cast<size_t>(out.numel()), type, ncclSum, comm_,
                                 stream_),
               "ncclReduceScatter");
    after();
  }

  void all_gather(const Tensor& in, Tensor& out) override {
    if (in.device() == Device::cpu && out.device() == Device::cpu) return bootstrap_->all_gather(in, out);
    check_device(in, "all_gather");
    check_device(out, "all_gather");
    if (out.dtype() != in.dtype() || out.numel() != in.numel() * size_)
      throw_error(ErrorCode::shape, "all_gather: out has ", out.numel(), " elements, expected ", size_, " x ",
                  in.numel());
    before();
    check_nccl(ncclAllGather(in.raw(), out.raw(), in.nbytes(), ncclUint8, comm_, stream_), "ncclAllGather");
    after();
  }

  void broadcast(Tensor& t, int root) override {
    if (t.device() == Device::cpu) return bootstrap_->broadcast(t, root);
    check_device(t, "broadcast");
    before();
    check_nccl(ncclBroadcast(t.raw(), t.raw(), t.nbytes(), ncclUint8, root, comm_, stream_), "ncclBroadcast");
    after();
  }

  void barrier() override { bootstrap_->barrier(); }

private:
  void before() { check_cuda(cudaDeviceSynchronize(), "waiting for the device before a collective"); }
  void after() { check_cuda(cudaStreamSynchronize(stream_), "waiting for a collective"); }

  int rank_, size_;
  std::unique_ptr<Communicator> bootstrap_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

bool built() {
  return true;
}

std::unique_ptr<Communicator> make(const DistConfig& config, std::unique_ptr<Communicator> bootstrap) {
  return std::make_unique<NcclCommunicator>(config, std::move(bootstrap));
}

}  // namespace mamba::dist::nccl_backend
