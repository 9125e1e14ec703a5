// Which devices this build and machine can run ops on, for code above the ops layer (models,
// apps, tests), which never sees a device API.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// CPU: always. CUDA: the build has the backend and the machine a device.
bool device_available(Device device);

// "cpu", or "cuda: NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)"; throws Error(unsupported)
// for an unavailable device.
std::string device_description(Device device);

// Waits until all queued work on the device is done, every Exec's (a no-op on the CPU).
void device_synchronize(Device device);

// Device memory the caching allocator hands out: in use now, and the most at once since the last
// reset_device_memory_peak (training reports its activations' share). 0 for the CPU.
struct DeviceMemory {
  size_t in_use = 0, peak = 0;
};
DeviceMemory device_memory(Device device);
void reset_device_memory_peak(Device device);

// "cpu" / "cuda" -> Device; throws Error(invalid_argument) otherwise.
Device parse_device(const std::string& name);

// Device time per op (`mambacpp bench --profile`), recorded by the op fronts of an Exec with
// profiling on (exec.h's Exec::set_profiling, OpScope): each op's device work outside graph
// captures is bracketed by a pair of events and filed under the op's name (an op called inside
// another also under "outer > inner", which the total leaves out). Markdown table of device ms per
// op since the last reset, largest first (waits for the device); "" when nothing was timed.
std::string op_profile_report();
void op_profile_reset();

// A recorded sequence of device work replayed as one launch (a CUDA graph): the launch overhead
// of many small kernels is paid once per replay. Between begin_capture and end_capture the ops'
// device work is recorded, not run; it must not read device data on the host (no copies to the
// CPU), and host-to-device copies must be done before (their source would not be re-read). Every
// device block allocated or freed during the capture stays reserved for the graph until it is
// reset or destroyed: tensors made in the capture and kept (its outputs) are rewritten by each
// replay, and the buffers it read or wrote (inputs, states) must stay alive and in place.
// Warm up first with one eager run, so that lazily created handles and workspaces exist.
class DeviceGraph {
public:
  DeviceGraph() = default;
  ~DeviceGraph();
  DeviceGraph(const DeviceGraph&) = delete;
  DeviceGraph& operator=(const DeviceGraph&) = delete;
  DeviceGraph(DeviceGraph&& other) noexcept;
  DeviceGraph& operator=(DeviceGraph&& other) noexcept;

  // Records the work `exec` queues (on its stream; replays run there too). Throws
  // Error(unsupported) for the CPU or a build without CUDA. Ends any earlier graph.
  void begin_capture(Exec& exec, Device device);
  void end_capture();
  // Queues one run of the captured work (asynchronous, ordered with the ops).
  void replay();
  bool ready() const { return handle_ != nullptr && !capturing_; }
  // Drops the graph (ending an open capture, e.g. after an op threw inside it).
  void reset();

private:
  void* handle_ = nullptr;
  bool capturing_ = false;
};

}  // namespace mamba::ops
