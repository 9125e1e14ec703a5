// NCCL is opened on first use (nccl_loader.cpp, CUDA builds only), not linked.
#pragma once
#include <string>

namespace mamba::dist::nccl_backend {

// Opens NCCL if not yet done and looks up every function the backend forwards to it: "" when all
// resolve, else why not (the library missing, or the functions it lacks). Needs no GPU.
std::string load_check();

}  // namespace mamba::dist::nccl_backend
