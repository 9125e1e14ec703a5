// cuBLAS is opened on first use (cublas_loader.cpp), not linked.
#pragma once
#include <string>

namespace mamba::cuda {

// Opens cuBLAS if not yet done and looks up every function the backend forwards to it: "" when all
// resolve, else why not (the library missing, or the functions it lacks). Needs no GPU.
std::string cublas_load_check();

}  // namespace mamba::cuda
