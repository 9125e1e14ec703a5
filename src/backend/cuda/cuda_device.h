// The CUDA backend's plain C++ face (no CUDA headers): whether a device is usable, what it is,
// and start-up registration of Device::cuda with core's allocator hooks. Code above the ops
// reaches these through ops/device.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mamba::cuda {

// True when the runtime finds at least one CUDA device (never throws; false without a driver).
bool available();

struct DeviceInfo {
  std::string name;            // "NVIDIA H100 80GB HBM3"
  int compute_capability = 0;  // 90 for sm_90
  int multiprocessors = 0;
  size_t global_memory = 0;                  // bytes
  size_t l2_cache = 0;                       // bytes
  size_t shared_memory_per_block_optin = 0;  // bytes a block may use after cudaFuncSetAttribute
};
// Properties of the current device (throws Error(unsupported) when there is none).
const DeviceInfo& device_info();

// Installs the Device::cuda allocator, copy and strided-copy hooks in core (idempotent; runs at
// start-up, touches no CUDA API until the first allocation).
void register_backend();

// Waits for all work queued on the backend's stream.
void synchronize();

// CUDA graphs of the backend's stream (ops/device.h's DeviceGraph). Between begin and end the
// work queued on the stream is recorded, not run, and the device memory allocated or freed
// meanwhile stays reserved for the graph (its replays write it) until release_graph.
struct Graph;
Graph* begin_graph_capture();
// Ends the capture and instantiates the graph; on failure releases it and throws / aborts.
void end_graph_capture(Graph* graph);
void replay_graph(Graph* graph);
// Ends an open capture (discarding it) or destroys the instantiated graph; frees `graph`.
void release_graph(Graph* graph);

// Per-op device timing (ops/device.h's OpTimer). start returns an event recorded on the stream, or
// null inside a graph capture; stop records the end and files the pair under `name`.
void* op_timer_start();
void op_timer_stop(void* start, std::string name);
// Table of the totals since the last reset (waits for the pending events), largest first.
std::string op_profile_report();
void op_profile_reset();

// Bytes currently handed out by the caching allocator / held in its cache (tests, bench).
size_t allocated_bytes();
size_t cached_bytes();

}  // namespace mamba::cuda
