// NCCL opened on first use instead of linked (core/lazy_library.h says why): a CUDA build runs
// where NCCL is not installed, and only a multi-GPU run (dist/nccl_backend_cuda.cpp) needs it.
// Each function the backend calls is defined here, declared by nccl.h (a signature mismatch fails
// to compile), and forwards to the library's; adding an NCCL call means adding its forwarder.
#include "dist/nccl_loader.h"

#include <nccl.h>

#include <string>

#include "core/lazy_library.h"

namespace {

mamba::LazyLibrary& library() {
  static mamba::LazyLibrary lib{"libnccl.so.2", MAMBACPP_NCCL_DIR "/libnccl.so.2"};
  return lib;
}

// A missing library reports ncclSystemError, whose text (ncclGetErrorString) then names it.
#define MAMBA_NCCL_FORWARD(name, ...)                                               \
  static const auto fn = library().function_like<ncclResult_t>(#name, __VA_ARGS__); \
  if (!fn) return ncclSystemError;                                                  \
  return fn(__VA_ARGS__)

}  // namespace

namespace mamba::dist::nccl_backend {

std::string load_check() {
  return library().check({"ncclGetUniqueId", "ncclCommInitRank", "ncclCommDestroy", "ncclGetErrorString",
                          "ncclAllReduce", "ncclReduceScatter", "ncclAllGather", "ncclBroadcast"});
}

}  // namespace mamba::dist::nccl_backend

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  MAMBA_NCCL_FORWARD(ncclGetUniqueId, uniqueId);
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  MAMBA_NCCL_FORWARD(ncclCommInitRank, comm, nranks, commId, rank);
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  MAMBA_NCCL_FORWARD(ncclCommDestroy, comm);
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  MAMBA_NCCL_FORWARD(ncclAllReduce, sendbuff, recvbuff, count, datatype, op, comm, stream);
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream) {
  MAMBA_NCCL_FORWARD(ncclReduceScatter, sendbuff, recvbuff, recvcount, datatype, op, comm, stream);
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream) {
  MAMBA_NCCL_FORWARD(ncclAllGather, sendbuff, recvbuff, sendcount, datatype, comm, stream);
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           int root, ncclComm_t comm, cudaStream_t stream) {
  MAMBA_NCCL_FORWARD(ncclBroadcast, sendbuff, recvbuff, count, datatype, root, comm, stream);
}

const char* ncclGetErrorString(ncclResult_t result) {
  if (!library().handle()) {
    static const std::string missing = "library libnccl.so.2 could not be loaded (" + library().error() + ")";
    return missing.c_str();
  }
  static const auto fn =
      reinterpret_cast<const char* (*)(ncclResult_t)>(library().symbol("ncclGetErrorString"));
  return fn ? fn(result) : "unknown NCCL result (ncclGetErrorString not found)";
}

}  // extern "C"
