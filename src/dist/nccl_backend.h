// The NCCL backend as comm.cpp sees it: nccl_backend_cuda.cpp in a CUDA build, else
// nccl_backend_none.cpp (src/dist/CMakeLists.txt picks one), so no dist source holds #if.
#pragma once
#include <memory>

#include "dist/comm.h"

namespace mamba::dist::nccl_backend {

bool built();
// An NCCL communicator on GPU config.local_rank; `bootstrap` (a socket communicator of the same
// ranks) carries rank 0's ncclUniqueId to the others and is kept for the host-side barrier.
std::unique_ptr<Communicator> make(const DistConfig& config, std::unique_ptr<Communicator> bootstrap);

}  // namespace mamba::dist::nccl_backend
