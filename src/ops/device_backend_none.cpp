// A build without a device backend (device_backend.h): nothing to create, bind or time. The
// callers check built() / available() before anything that needs a device.
#include <string>

#include "ops/device_backend.h"

namespace mamba::ops::device_backend {

bool built() {
  return false;
}

bool available() {
  return false;
}

std::string description() {
  return "";
}

void synchronize_device() {}

size_t memory_in_use() {
  return 0;
}
size_t memory_peak() {
  return 0;
}
void reset_memory_peak() {}

void* create_context(bool) {
  return nullptr;
}

void destroy_context(void*) {}

void* bind_context(void*) {
  return nullptr;
}

void synchronize(void*) {}

void* op_timer_start() {
  return nullptr;
}

void op_timer_stop(void*, std::string) {}

std::string op_profile_report() {
  return "";
}

void op_profile_reset() {}

void* begin_graph_capture() {
  return nullptr;
}

void end_graph_capture(void*) {}

void replay_graph(void*) {}

void release_graph(void*) {}

}  // namespace mamba::ops::device_backend
