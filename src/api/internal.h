// The public API's handles (include/mambacpp/*.h) over the library's own types: each public
// Impl holds the internal object, and guard() turns an internal Error into the public one at the
// boundary. Only src/api/ includes this.
#pragma once
#include <mambacpp/mambacpp.h>

#include <memory>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/tensor.h"
#include "dist/comm.h"
#include "models/model.h"
#include "models/vim.h"
#include "ops/exec.h"
#include "runtime/session.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"
#include "train/packed.h"
#include "train/tasks.h"
#include "train/trainer.h"

namespace mambacpp {

// The public enums mirror the internal ones value for value.
static_assert(static_cast<int>(ErrorCode::not_found) == static_cast<int>(mamba::ErrorCode::not_found));
static_assert(static_cast<int>(DType::q6_k) == static_cast<int>(mamba::DType::q6_k));
static_assert(static_cast<int>(Device::cuda) == static_cast<int>(mamba::Device::cuda));
static_assert(static_cast<int>(StopReason::callback) ==
              static_cast<int>(mamba::runtime::StopReason::callback));

inline mamba::DType to_internal(DType d) {
  return static_cast<mamba::DType>(d);
}
inline DType to_public(mamba::DType d) {
  return static_cast<DType>(d);
}
inline mamba::Device to_internal(Device d) {
  return static_cast<mamba::Device>(d);
}
inline Device to_public(mamba::Device d) {
  return static_cast<Device>(d);
}

// Runs f; an internal Error leaves as the public Error with the same code and message.
template <typename F>
auto guard(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const mamba::Error& e) {
    throw Error(static_cast<ErrorCode>(e.code()), e.what());
  }
}

struct KernelPlan::Impl {
  mamba::ops::KernelPlan plan;
};

struct Context::Impl {
  mamba::ops::Exec exec;
  Impl(mamba::Device device, const mamba::ops::KernelPlan& plan) : exec(device, plan) {}
};

struct Tensor::Impl {
  mamba::Tensor t;
};
inline Tensor wrap(mamba::Tensor t) {
  return Tensor(std::make_unique<Tensor::Impl>(Tensor::Impl{std::move(t)}));
}
inline const mamba::Tensor& unwrap(const Tensor& t) {
  return t.impl().t;
}

struct State::Impl {
  mamba::models::State state;
};

// An owned model, or one borrowed from an owner (a Trainer's) that outlives the handle.
struct Model::Impl {
  std::unique_ptr<mamba::models::Model> owned;
  mamba::models::Model* model = nullptr;
  explicit Impl(mamba::models::Model m)
      : owned(std::make_unique<mamba::models::Model>(std::move(m))), model(owned.get()) {}
  explicit Impl(mamba::models::Model* borrowed) : model(borrowed) {}
};
inline const mamba::models::Model& unwrap(const Model& m) {
  return *m.impl().model;
}

struct Tokenizer::Impl {
  std::shared_ptr<const mamba::tok::Tokenizer> tok;
};
// The internal tokenizer of a public one, sharing its ownership.
inline std::shared_ptr<const mamba::tok::Tokenizer> unwrap_shared(const std::shared_ptr<const Tokenizer>& t) {
  if (!t) return nullptr;
  return std::shared_ptr<const mamba::tok::Tokenizer>(t, t->impl().tok.get());
}
std::shared_ptr<const Tokenizer> wrap(std::shared_ptr<const mamba::tok::Tokenizer> t);

struct Sampler::Impl {
  mamba::sampling::Sampler sampler;
};

struct Session::Impl {
  const Model* model;
  mamba::runtime::Session session;
};

GenerateResult to_public(const mamba::runtime::GenerateResult& r);
mamba::runtime::GenerateParams to_internal(const GenerateParams& p);

}  // namespace mambacpp
