// Device queries for the layers above the ops (see device.h); the only ops file that reaches the
// CUDA backend without being an op.
#include "ops/device.h"

#include <cstdio>

#include "core/error.h"
#if MAMBACPP_HAVE_CUDA
#include "backend/cuda/cuda_device.h"
#endif

namespace mamba::ops {

bool device_available(Device device) {
  if (device == Device::cpu) return true;
#if MAMBACPP_HAVE_CUDA
  return cuda::available();
#else
  return false;
#endif
}

std::string device_description(Device device) {
  if (device == Device::cpu) return "cpu";
#if MAMBACPP_HAVE_CUDA
  const cuda::DeviceInfo& d = cuda::device_info();
  char buf[256];
  std::snprintf(buf, sizeof buf, "cuda: %s (sm_%d, %d SMs, %.1f GiB)", d.name.c_str(), d.compute_capability,
                d.multiprocessors, static_cast<double>(d.global_memory) / (1 << 30));
  return buf;
#else
  throw_error(ErrorCode::unsupported, "this build has no CUDA backend (configure with -DMAMBACPP_CUDA=ON)");
#endif
}

void device_synchronize(Device device) {
  if (device == Device::cpu) return;
#if MAMBACPP_HAVE_CUDA
  cuda::synchronize();
#endif
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") {
    if (!device_available(Device::cuda))
      throw_error(ErrorCode::unsupported, "--device cuda: ",
                  MAMBACPP_HAVE_CUDA ? "no CUDA device found" : "this build has no CUDA backend");
    return Device::cuda;
  }
  throw_error(ErrorCode::invalid_argument, "unknown device '", name, "' (expected cpu or cuda)");
}

}  // namespace mamba::ops
