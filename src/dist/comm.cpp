// The communicator factory and the single-process backend (see comm.h).
#include "dist/comm.h"

#include <cstring>

#include "core/error.h"
#include "dist/nccl_backend.h"

namespace mamba::dist {
namespace {

class SingleCommunicator final : public Communicator {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single"; }
  void all_reduce_sum(Tensor&) override {}
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override { copy(in, out, "reduce_scatter_sum"); }
  void all_gather(const Tensor& in, Tensor& out) override { copy(in, out, "all_gather"); }
  void broadcast(Tensor&, int root) override {
    if (root != 0) throw_error(ErrorCode::invalid_argument, "broadcast: root ", root, " of 1 rank");
  }
  void barrier() override {}

private:
  static void copy(const Tensor& in, Tensor& out, const char* op) {
    if (in.numel() != out.numel() || in.dtype() != out.dtype())
      throw_error(ErrorCode::shape, op, ": in and out differ in size or dtype on one rank");
    if (in.raw() != out.raw()) out.copy_from(in.view(out.shape()));
  }
};

}  // namespace

std::vector<double> Communicator::all_reduce_sum(std::vector<double> values) {
  if (size() == 1 || values.empty()) return values;
  Tensor t = Tensor::empty({static_cast<int64_t>(values.size())}, DType::i64);  // 8-byte slots of doubles
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(double));
  all_reduce_sum(t);
  std::memcpy(values.data(), t.raw(), values.size() * sizeof(double));
  return values;
}

std::unique_ptr<Communicator> make_communicator(const DistConfig& config, Device device) {
  if (config.size < 1 || config.rank < 0 || config.rank >= config.size)
    throw_error(ErrorCode::invalid_argument, "dist: rank ", config.rank, " is not in [0, ", config.size, ")");
  if (config.backend != "auto" && config.backend != "socket" && config.backend != "nccl")
    throw_error(ErrorCode::invalid_argument, "dist: backend expected auto, socket or nccl, found '",
                config.backend, "'");
  // One rank: no-ops, unless NCCL is asked for by name (a one-GPU check of the NCCL plumbing).
  if (config.size == 1 && config.backend != "nccl") return std::make_unique<SingleCommunicator>();
  const bool nccl = config.backend == "nccl" || (config.backend == "auto" && device == Device::cuda);
  if (!nccl) return make_socket_communicator(config);
  if (!nccl_backend::built())
    throw_error(ErrorCode::unsupported, "dist: the nccl backend needs a CUDA build (MAMBACPP_CUDA=ON)");
  return nccl_backend::make(config, make_socket_communicator(config));
}

}  // namespace mamba::dist
