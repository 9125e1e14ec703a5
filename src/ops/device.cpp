// Device queries for the layers above the ops (see device.h), through the device backend's
// plumbing (device_backend.h; with exec.cpp its only callers).
#include "ops/device.h"

#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/device_backend.h"

namespace mamba::ops {

bool device_available(Device device) {
  if (device == Device::cpu) return true;
  return device_backend::available();
}

std::string device_description(Device device) {
  if (device == Device::cpu) return "cpu";
  if (!device_backend::built())
    throw_error(ErrorCode::unsupported, "this build has no CUDA backend (configure with -DMAMBACPP_CUDA=ON)");
  return "cuda: " + device_backend::description();
}

void device_synchronize(Device device) {
  if (device == Device::cpu) return;
  device_backend::synchronize_device();
}

DeviceMemory device_memory(Device device) {
  if (device == Device::cpu) return {};
  return {device_backend::memory_in_use(), device_backend::memory_peak()};
}

void reset_device_memory_peak(Device device) {
  if (device != Device::cpu) device_backend::reset_memory_peak();
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") {
    if (!device_available(Device::cuda))
      throw_error(ErrorCode::unsupported, "--device cuda: ",
                  device_backend::built() ? "no CUDA device found" : "this build has no CUDA backend");
    return Device::cuda;
  }
  throw_error(ErrorCode::invalid_argument, "unknown device '", name, "' (expected cpu or cuda)");
}

std::string op_profile_report() {
  if (device_available(Device::cuda)) return device_backend::op_profile_report();
  return "";
}

void op_profile_reset() {
  if (device_available(Device::cuda)) device_backend::op_profile_reset();
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
  handle_ = device_backend::begin_graph_capture();
  capturing_ = true;
}

void DeviceGraph::end_capture() {
  MAMBA_CHECK(handle_ && capturing_, "DeviceGraph::end_capture without begin_capture");
  capturing_ = false;
  try {
    device_backend::end_graph_capture(handle_);
  } catch (...) {
    reset();
    throw;
  }
}

void DeviceGraph::replay() {
  MAMBA_CHECK(ready(), "DeviceGraph::replay before a capture ended");
  device_backend::replay_graph(handle_);
}

void DeviceGraph::reset() {
  if (!handle_) return;
  device_backend::release_graph(handle_);
  handle_ = nullptr;
  capturing_ = false;
}

}  // namespace mamba::ops
