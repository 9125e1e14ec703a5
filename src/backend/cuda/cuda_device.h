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

// One execution context (ops::Exec's backend part): a stream, the cuBLAS / cuBLASLt handles bound
// to it and a GEMM workspace, made on its first use (no CUDA call before). CUDA work runs on the
// context bound to the calling thread (bind_context; ops::ExecScope binds its Exec's). Work with
// none bound (copies while a model is loaded or moved, tests reading results) runs on the legacy
// default stream after waiting for the whole device, and is waited for: correct, not fast.
struct Context;
struct ContextOptions {
  bool dependent_launch = true;  // programmatic dependent launch where the device has it (sm_90+)
};
Context* create_context(const ContextOptions& options);
// Waits for the context's work, hands its cached blocks to the unbound pool, frees its objects.
void destroy_context(Context* ctx);
// Makes `ctx` (may be null) the calling thread's context; returns the previous one.
Context* bind_context(Context* ctx);
Context* bound_context();

// Waits for all work queued on `ctx`'s stream (a no-op before its first use) / on the device.
void synchronize(Context* ctx);
void synchronize_device();

// CUDA graphs of the bound context's stream (ops/device.h's DeviceGraph). Between begin and end the
// work queued on the stream is recorded, not run, and the device memory allocated or freed
// meanwhile stays reserved for the graph (its replays write it) until release_graph.
struct Graph;
Graph* begin_graph_capture();
// Ends the capture and instantiates the graph; on failure releases it and throws / aborts.
void end_graph_capture(Graph* graph);
void replay_graph(Graph* graph);
// Ends an open capture (discarding it) or destroys the instantiated graph; frees `graph`.
void release_graph(Graph* graph);

// Per-op device timing (ops/exec.h's OpScope). start returns an event recorded on the stream, or
// null inside a graph capture; stop records the end and files the pair under `name`.
void* op_timer_start();
void op_timer_stop(void* start, std::string name);
// Table of the totals since the last reset (waits for the pending events), largest first.
std::string op_profile_report();
void op_profile_reset();

// Bytes currently handed out by the caching allocator / held in its cache (tests, bench).
size_t allocated_bytes();
size_t cached_bytes();
// The most bytes handed out at once since the last reset (or the start); a reset sets it to the
// bytes handed out now.
size_t peak_allocated_bytes();
void reset_peak_allocated();

}  // namespace mamba::cuda
