// Device queries for the layers above the ops (see device.h); with exec.cpp, the only ops files
// that reach the CUDA backend without being one of its kernels.
#include "ops/device.h"

#include <cstdio>
#include <utility>
#include <vector>

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
  cuda::synchronize_device();
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

std::string op_profile_report() {
#if MAMBACPP_HAVE_CUDA
  if (device_available(Device::cuda)) return cuda::op_profile_report();
#endif
  return "";
}

void op_profile_reset() {
#if MAMBACPP_HAVE_CUDA
  if (device_available(Device::cuda)) cuda::op_profile_reset();
#endif
}

DeviceGraph::~DeviceGraph() {
  reset();
}

DeviceGraph::DeviceGraph(DeviceGraph&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), capturing_(std::exchange(other.capturing_, false)) {}

DeviceGraph& DeviceGraph::operator=(DeviceGraph&& other) noexcept {
  if (this != &other) {
    reset();
    handle_ = std::exchange(other.handle_, nullptr);
    capturing_ = std::exchange(other.capturing_, false);
  }
  return *this;
}

void DeviceGraph::begin_capture(Exec& exec, Device device) {
  reset();
  if (device != Device::cuda || !device_available(device))
    throw_error(ErrorCode::unsupported, "device graphs need a CUDA device");
  const ExecScope bind(exec);  // the capture's stream: exec's
#if MAMBACPP_HAVE_CUDA
  handle_ = cuda::begin_graph_capture();
  capturing_ = true;
#endif
}

void DeviceGraph::end_capture() {
  MAMBA_CHECK(handle_ && capturing_, "DeviceGraph::end_capture without begin_capture");
#if MAMBACPP_HAVE_CUDA
  capturing_ = false;
  try {
    cuda::end_graph_capture(static_cast<cuda::Graph*>(handle_));
  } catch (...) {
    reset();
    throw;
  }
#endif
}

void DeviceGraph::replay() {
  MAMBA_CHECK(ready(), "DeviceGraph::replay before a capture ended");
#if MAMBACPP_HAVE_CUDA
  cuda::replay_graph(static_cast<cuda::Graph*>(handle_));
#endif
}

void DeviceGraph::reset() {
  if (!handle_) return;
#if MAMBACPP_HAVE_CUDA
  cuda::release_graph(static_cast<cuda::Graph*>(handle_));
#endif
  handle_ = nullptr;
  capturing_ = false;
}

}  // namespace mamba::ops
