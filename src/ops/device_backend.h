// The device backend's plumbing as the ops layer sees it: contexts and their binding, graphs, the
// op profiler and device queries. Implemented by device_backend_cuda.cpp in a CUDA build and by
// device_backend_none.cpp otherwise (src/ops/CMakeLists.txt chooses, as it chooses the kernel
// table's file, kernels.h), so no ops source file holds preprocessor code. Private to ops: only
// exec.cpp and device.cpp call it.
#pragma once
#include <cstddef>
#include <string>

namespace mamba::ops::device_backend {

// The build has a device backend (CUDA); available(): and the machine a device.
bool built();
bool available();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)"; only where available().
std::string description();
// Waits for all queued device work, every context's.
void synchronize_device();
// Bytes of device memory in use now and at most since reset_memory_peak (0 without a backend).
size_t memory_in_use();
size_t memory_peak();
void reset_memory_peak();

// A context (stream, BLAS handles, workspace), made lazily by the backend; null without one.
void* create_context(bool dependent_launch);
void destroy_context(void* context);
// Binds `context` to the calling thread; returns the one bound before.
void* bind_context(void* context);
void synchronize(void* context);

// Event pairs around an op's device work (OpScope), and their report.
void* op_timer_start();
void op_timer_stop(void* start, std::string name);
std::string op_profile_report();
void op_profile_reset();

// Graph capture on the bound context's stream (DeviceGraph).
void* begin_graph_capture();
void end_graph_capture(void* graph);
void replay_graph(void* graph);
void release_graph(void* graph);

}  // namespace mamba::ops::device_backend
