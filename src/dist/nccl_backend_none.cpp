// A build without CUDA: no NCCL (see nccl_backend.h).
#include "core/error.h"
#include "dist/nccl_backend.h"

namespace mamba::dist::nccl_backend {

bool built() {
  return false;
}

std::unique_ptr<Communicator> make(const DistConfig&, std::unique_ptr<Communicator>) {
  throw_error(ErrorCode::unsupported, "dist: the nccl backend needs a CUDA build (MAMBACPP_CUDA=ON)");
}

}  // namespace mamba::dist::nccl_backend
