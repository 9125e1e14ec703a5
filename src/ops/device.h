// Which devices this build and machine can run ops on, for code above the ops layer (models,
// apps, tests), which never sees a device API.
#pragma once
#include <string>

#include "core/tensor.h"

namespace mamba::ops {

// CPU: always. CUDA: the build has the backend and the machine a device.
bool device_available(Device device);

// "cpu", or "cuda: NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)"; throws Error(unsupported)
// for an unavailable device.
std::string device_description(Device device);

// Waits until all queued work on the device is done (timing; a no-op on the CPU).
void device_synchronize(Device device);

// "cpu" / "cuda" -> Device; throws Error(invalid_argument) otherwise.
Device parse_device(const std::string& name);

}  // namespace mamba::ops
