// ops::Exec: the kernel plan's names, the backend context's life and binding (through
// device_backend.h), OpScope's timing, and the kernel table's accessor (kernels.h).
#include "ops/exec.h"

#include <array>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ops/device.h"
#include "ops/device_backend.h"
#include "ops/kernels.h"

namespace mamba::ops {

struct BackendContext {
  void* context = nullptr;  // the device backend's (device_backend::create_context)
};

namespace {

template <typename E>
struct Names {
  const char* key;
  std::vector<std::pair<E, const char*>> values;
  const char* name(E v) const {
    for (auto& [e, n] : values)
      if (e == v) return n;
    return "?";
  }
  std::string expected() const {
    std::string s;
    for (auto& [e, n] : values) {
      if (!s.empty()) s += '|';
      s += n;
    }
    return s;
  }
  E parse(const std::string& value) const {
    for (auto& [e, n] : values)
      if (value == n) return e;
    throw_error(ErrorCode::invalid_argument, "--kernel ", key, ": expected ", expected(), ", found '", value,
                "'");
  }
};

using P = KernelPlan;
const Names<P::SsdBwd> kSsdBwd{"ssd_bwd",
                               {{P::SsdBwd::automatic, "auto"},
                                {P::SsdBwd::gemm, "gemm"},
                                {P::SsdBwd::exact, "exact"},
                                {P::SsdBwd::fast, "fast"}}};
const Names<P::Mamba3Bwd> kMamba3Bwd{"mamba3_bwd",
                                     {{P::Mamba3Bwd::automatic, "auto"},
                                      {P::Mamba3Bwd::gemm, "gemm"},
                                      {P::Mamba3Bwd::exact, "exact"},
                                      {P::Mamba3Bwd::fast, "fast"}}};
const Names<P::DecodeGemv> kDecodeGemv{
    "decode_gemv", {{P::DecodeGemv::automatic, "auto"}, {P::DecodeGemv::cublas, "cublas"}}};
const Names<P::GemvSplit> kGemvSplit{"gemv_split",
                                     {{P::GemvSplit::automatic, "auto"},
                                      {P::GemvSplit::s11, "11"},
                                      {P::GemvSplit::s21, "21"},
                                      {P::GemvSplit::s12, "12"},
                                      {P::GemvSplit::s14, "14"}}};
const Names<P::Mamba3Step> kMamba3Step{
    "mamba3_step",
    {{P::Mamba3Step::automatic, "auto"}, {P::Mamba3Step::fused, "fused"}, {P::Mamba3Step::stream, "stream"}}};
const Names<bool> kDependentLaunch{"dependent_launch", {{true, "on"}, {false, "off"}}};
const Names<bool> kFuseDecode{"fuse_decode", {{true, "on"}, {false, "off"}}};

// Every field as (key, value name), in declaration order.
std::vector<std::pair<const char*, const char*>> fields(const KernelPlan& p) {
  return {{kSsdBwd.key, kSsdBwd.name(p.ssd_bwd)},
          {kMamba3Bwd.key, kMamba3Bwd.name(p.mamba3_bwd)},
          {kDecodeGemv.key, kDecodeGemv.name(p.decode_gemv)},
          {kGemvSplit.key, kGemvSplit.name(p.gemv_split)},
          {kMamba3Step.key, kMamba3Step.name(p.mamba3_step)},
          {kDependentLaunch.key, kDependentLaunch.name(p.dependent_launch)},
          {kFuseDecode.key, kFuseDecode.name(p.fuse_decode)}};
}

}  // namespace

void KernelPlan::set(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos)
    throw_error(ErrorCode::invalid_argument, "--kernel: expected name=value, found '", assignment, "'");
  const std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  if (key == kSsdBwd.key) {
    ssd_bwd = kSsdBwd.parse(value);
  } else if (key == kMamba3Bwd.key) {
    mamba3_bwd = kMamba3Bwd.parse(value);
  } else if (key == kDecodeGemv.key) {
    decode_gemv = kDecodeGemv.parse(value);
  } else if (key == kGemvSplit.key) {
    gemv_split = kGemvSplit.parse(value);
  } else if (key == kMamba3Step.key) {
    mamba3_step = kMamba3Step.parse(value);
  } else if (key == kDependentLaunch.key) {
    dependent_launch = kDependentLaunch.parse(value);
  } else if (key == kFuseDecode.key) {
    fuse_decode = kFuseDecode.parse(value);
  } else {
    std::string keys;
    for (auto& [k, v] : fields(*this)) {
      if (!keys.empty()) keys += ", ";
      keys += k;
    }
    throw_error(ErrorCode::invalid_argument, "--kernel: unknown kernel choice '", key, "' (expected one of ",
                keys, ")");
  }
}

std::string KernelPlan::to_json() const {
  std::string s = "{";
  for (auto& [k, v] : fields(*this)) {
    if (s.size() > 1) s += ',';
    s += '"';
    s += k;
    s += "\":\"";
    s += v;
    s += '"';
  }
  return s + "}";
}

std::string KernelPlan::describe() const {
  const auto defaults = fields(KernelPlan{}), mine = fields(*this);
  std::string s;
  for (size_t i = 0; i < mine.size(); ++i)
    if (std::string(mine[i].second) != defaults[i].second) {
      if (!s.empty()) s += ' ';
      s += mine[i].first;
      s += '=';
      s += mine[i].second;
    }
  return s.empty() ? "default" : s;
}

const CudaKernels& cuda_kernels() {
  const CudaKernels* table = cuda_kernel_table();
  if (!table) throw_error(ErrorCode::unsupported, "this build has no CUDA backend");
  return *table;
}

Exec::Exec(Device device, KernelPlan plan) : device_(device), plan_(plan) {
  // Cheap: the stream and handles are made on the first CUDA work.
  if (device_backend::built())
    backend_.reset(new BackendContext{device_backend::create_context(plan_.dependent_launch)});
}

Exec::~Exec() = default;

void Exec::BackendDeleter::operator()(BackendContext* c) const {
  device_backend::destroy_context(c->context);
  delete c;
}

void Exec::set_profiling(bool on) {
  profiling_ = on && device_available(Device::cuda);
}

void Exec::synchronize() {
  if (backend_) device_backend::synchronize(backend_->context);
}

ExecScope::ExecScope(Exec& exec) {
  if (BackendContext* b = exec.backend()) {
    previous_ = device_backend::bind_context(b->context);
    bound_ = true;
  }
}

ExecScope::~ExecScope() {
  if (bound_) device_backend::bind_context(previous_);
}

namespace {
// The names of the open timers, outermost first: an op called inside another is filed as
// "outer > inner" (shown indented; the report's total counts outermost ops only).
thread_local std::vector<std::string> open_timers;
}  // namespace

void OpScope::start(const char* name, int64_t tag) {
  std::string own = tag >= 0 ? std::string(name) + "[" + std::to_string(tag) + "]" : std::string(name);
  name_ = open_timers.empty() ? own : open_timers.back() + " > " + own;
  open_timers.push_back(name_);
  outer_ = true;  // this timer owns an entry of the stack
  mark_ = device_backend::op_timer_start();
}

void OpScope::stop() {
  open_timers.pop_back();
  device_backend::op_timer_stop(mark_, std::move(name_));
  mark_ = nullptr;
  outer_ = false;
}

}  // namespace mamba::ops
