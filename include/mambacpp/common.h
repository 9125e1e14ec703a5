// mambacpp public API, the vocabulary every other public header uses: errors, element types,
// devices, threads, files, and the execution context (Context) that carries a device stream and
// the kernel plan.
//
// Threading contract (all of <mambacpp/...>): a `const Model&` is immutable and may be shared by
// any number of threads. Everything that changes while a model runs belongs to one thread at a
// time: a Context, a State, a Session, a Sampler, a Trainer. Use one Session (or one Context) per
// thread. Model::to and Model::set_matmul_dtype change the model: call them before sharing it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

namespace mambacpp {

// What went wrong with an input (a file, a config, a flag, a token id).
enum class ErrorCode { invalid_argument, io, parse, shape, dtype, unsupported, out_of_range, not_found };

// Every error the library reports about its inputs: a one-line message naming the input.
class Error : public std::runtime_error {
public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

private:
  ErrorCode code_;
};

// Builds the message from a stream expression: throw_error(ErrorCode::shape, "got ", n).
template <typename... Args>
[[noreturn]] void throw_error(ErrorCode code, const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(code, os.str());
}

// Element types: f32 compute; bf16 / f16 storage; integer ids; llama.cpp's block formats
// (weights only; docs/quantization.md).
enum class DType { f32, bf16, f16, i64, i32, u8, q8_0, q4_0, q4_k, q6_k };
const char* dtype_name(DType dtype);  // "f32", "bf16", ...

enum class Device { cpu, cuda };
// "cpu" or "cuda"; Error when the name is unknown or this build / machine has no such device.
Device parse_device(const std::string& name);
bool device_available(Device device);
std::string device_description(Device device);  // "cpu", or "cuda: " and the GPU
void device_synchronize(Device device);         // waits for the device's queued work
struct DeviceMemory {
  size_t in_use = 0, peak = 0;  // bytes the library holds on the device
};
DeviceMemory device_memory(Device device);
void reset_device_memory_peak(Device device);

// CPU threads of the library's loops and GEMMs; n <= 0: all cores.
void set_num_threads(int n);
int num_threads();
// A ceiling on host allocations (0: none); parse_byte_size reads "4G", "512M", "1000" (`what`
// names the source in errors).
void set_memory_ceiling(uint64_t bytes);
uint64_t parse_byte_size(const std::string& text, const std::string& what);

// Whole-file read (Error naming the path), atomic write (temp file, then rename).
std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, const std::string& contents);
bool file_exists(const std::string& path);
std::string path_join(const std::string& dir, const std::string& name);

// The kernel choices of a Context (docs/kernels.md): each `set("name=value")` pins one
// (ssd_bwd, mamba3_bwd, decode_gemv, gemv_split, mamba3_step, dependent_launch, fuse_decode);
// an unknown name or value is an Error. Default: every choice automatic.
class KernelPlan {
public:
  KernelPlan();
  ~KernelPlan();
  KernelPlan(const KernelPlan& other);
  KernelPlan& operator=(const KernelPlan& other);

  void set(const std::string& assignment);
  std::string describe() const;  // one line for logs
  std::string to_json() const;   // a JSON object, recorded with benchmark results

  struct Impl;
  const Impl& impl() const { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

// The execution context of one thread's model calls: the device, its stream and BLAS handles and
// workspace, the kernel plan, the op profiler. Not shared between threads.
class Context {
public:
  explicit Context(Device device = Device::cpu, const KernelPlan& plan = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const;
  // Device time per op (CUDA), read with op_profile_report().
  void set_profiling(bool on);
  void synchronize();

  struct Impl;
  Impl& impl() { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

// The op profiler's table of device time per op since the last reset (Context::set_profiling).
std::string op_profile_report();
void op_profile_reset();

}  // namespace mambacpp
