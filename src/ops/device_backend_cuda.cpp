// The CUDA build's device backend for the ops layer (device_backend.h): thin calls into
// backend/cuda (cuda_device.h). Compiled only in a CUDA build, with cuda_kernels.cpp.
#include <cstdio>
#include <string>
#include <utility>

#include "backend/cuda/cuda_device.h"
#include "ops/device_backend.h"

namespace mamba::ops::device_backend {

bool built() {
  return true;
}

bool available() {
  return cuda::available();
}

std::string description() {
  const cuda::DeviceInfo& d = cuda::device_info();
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s (sm_%d, %d SMs, %.1f GiB)", d.name.c_str(), d.compute_capability,
                d.multiprocessors, static_cast<double>(d.global_memory) / (1 << 30));
  return buf;
}

void synchronize_device() {
  cuda::synchronize_device();
}

size_t memory_in_use() {
  return cuda::allocated_bytes();
}
size_t memory_peak() {
  return cuda::peak_allocated_bytes();
}
void reset_memory_peak() {
  cuda::reset_peak_allocated();
}

void* create_context(bool dependent_launch) {
  return cuda::create_context({.dependent_launch = dependent_launch});
}

void destroy_context(void* context) {
  cuda::destroy_context(static_cast<cuda::Context*>(context));
}

void* bind_context(void* context) {
  return cuda::bind_context(static_cast<cuda::Context*>(context));
}

void synchronize(void* context) {
  cuda::synchronize(static_cast<cuda::Context*>(context));
}

void* op_timer_start() {
  return cuda::op_timer_start();
}

void op_timer_stop(void* start, std::string name) {
  cuda::op_timer_stop(start, std::move(name));
}

std::string op_profile_report() {
  return cuda::op_profile_report();
}

void op_profile_reset() {
  cuda::op_profile_reset();
}

void* begin_graph_capture() {
  return cuda::begin_graph_capture();
}

void end_graph_capture(void* graph) {
  cuda::end_graph_capture(static_cast<cuda::Graph*>(graph));
}

void replay_graph(void* graph) {
  cuda::replay_graph(static_cast<cuda::Graph*>(graph));
}

void release_graph(void* graph) {
  cuda::release_graph(static_cast<cuda::Graph*>(graph));
}

}  // namespace mamba::ops::device_backend
