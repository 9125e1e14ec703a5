// The execution context every op runs in: the device, the kernel plan (which kernel an op picks
// where several compute the same thing), the per-op profiler switch and the backend's context (on
// CUDA: a stream, the cuBLAS handle bound to it and a GEMM workspace, created by the
// backend on the first CUDA work of this Exec).
//
//   ops::Exec exec(Device::cuda);            // or Exec(Device::cuda, plan)
//   Tensor y = ops::linear(exec, x, w);      // every op takes the Exec first
//   Tensor logits = model.step(exec, ids, state);
//
// Threading contract: an Exec belongs to one thread at a time (it is not locked; its stream orders
// that thread's work). A `const Model&` holds no execution state and is shared by any number of
// threads, each with its own Exec. A device tensor made under one Exec and used under another must
// be waited for (Exec::synchronize) before the hand-over; the caching allocator reuses a freed block
// only on the stream it was allocated on (backend/cuda/cuda_allocator.cu).
//
// Who owns one: runtime::Session, train::Trainer, the bench and the server's workers; tests make
// their own. Nothing else reads the environment: apps/cli maps flags (--kernel) into the plan.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace mamba::ops {

// The kernel choices a caller may pin (timing comparisons, a fallback when a fast path misbehaves
// on some device). `automatic` everywhere is the production default: each op's front chooses from
// its shapes, dtypes and the device.
struct KernelPlan {
  enum class SsdBwd { automatic, gemm, exact, fast };  // Mamba-2 backward: GEMM form, exact scan, fused bf16
  enum class Mamba3Bwd { automatic, gemm, exact, fast };   // Mamba-3 scan backward: GEMM, exact, fused bf16
  enum class DecodeGemv { automatic, cublas };             // bf16 decode rows: own GEMV kernel or cuBLAS
  enum class GemvSplit { automatic, s11, s21, s12, s14 };  // outputs per warp x warps per output
  enum class Mamba3Step { automatic, fused, stream };      // Mamba-3 SISO decode kernel
  SsdBwd ssd_bwd = SsdBwd::automatic;
  Mamba3Bwd mamba3_bwd = Mamba3Bwd::automatic;
  DecodeGemv decode_gemv = DecodeGemv::automatic;
  GemvSplit gemv_split = GemvSplit::automatic;
  Mamba3Step mamba3_step = Mamba3Step::automatic;
  bool dependent_launch = true;  // programmatic dependent launch on sm_90+
  bool fuse_decode = true;       // norm+GEMV and GEMV+residual kernels in decode (else unfused ops)

  // Sets one field from "name=value" (the names and values of to_json); throws
  // Error(invalid_argument) naming the key, the expected values and what was found.
  void set(const std::string& assignment);
  // {"ssd_bwd":"auto","mamba3_bwd":"auto",...}: every field, for bench's JSON lines.
  std::string to_json() const;
  // "default" or the fields that differ from it ("ssd_bwd=exact dependent_launch=off").
  std::string describe() const;
  bool operator==(const KernelPlan&) const = default;
};

// The backend's per-Exec state (opaque above the backend; created lazily).
struct BackendContext;

class Exec {
public:
  explicit Exec(Device device = Device::cpu, KernelPlan plan = {});
  ~Exec();
  Exec(const Exec&) = delete;
  Exec& operator=(const Exec&) = delete;

  Device device() const { return device_; }
  const KernelPlan& plan() const { return plan_; }
  // Per-op device time (ops/device.h's op_profile_report): on only with a CUDA device.
  void set_profiling(bool on);
  bool profiling() const { return profiling_; }
  // Waits until the work this Exec queued is done (a no-op on the CPU or before any CUDA work).
  void synchronize();
  // The backend's context (the CUDA build's: made on first call, stream and handles made on the
  // first CUDA work); null in a build without a device backend.
  BackendContext* backend() { return backend_.get(); }

private:
  struct BackendDeleter {
    void operator()(BackendContext* c) const;
  };
  Device device_;
  KernelPlan plan_;
  bool profiling_ = false;
  std::unique_ptr<BackendContext, BackendDeleter> backend_;
};

// Makes `exec` the context of the device work this thread queues until the scope ends (nests; the
// previous one returns). The model's entry points, Session and Trainer open one, so that the tensor
// copies between ops run on the Exec's stream too; every op front opens one (OpScope).
class ExecScope {
public:
  explicit ExecScope(Exec& exec);
  ~ExecScope();
  ExecScope(const ExecScope&) = delete;
  ExecScope& operator=(const ExecScope&) = delete;

private:
  void* previous_ = nullptr;  // the backend's context bound before
  bool bound_ = false;
};

// An op's scope in an op front: binds the Exec (ExecScope) and, when `device` is cuda and the Exec
// is profiling, times the scope's device work as `name` (with `tag` >= 0: "name[tag]", e.g. a
// linear's output features); an op called inside another is filed as "outer > inner".
class OpScope {
public:
  OpScope(Exec& exec, const char* name, Device device, int64_t tag = -1) : bind_(exec) {
    if (device == Device::cuda && exec.profiling()) start(name, tag);
  }
  ~OpScope() {
    if (outer_) stop();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

private:
  void start(const char* name, int64_t tag);
  void stop();
  ExecScope bind_;
  void* mark_ = nullptr;
  bool outer_ = false;  // started (owns an entry of the open-timer stack)
  std::string name_;
};

}  // namespace mamba::ops
