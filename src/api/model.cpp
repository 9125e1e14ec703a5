// The public Model and State (model.h) over models::Model; quantize over its GGUF writer.
#include <utility>

#include "internal.h"
#include "models/architectures.h"
#include "runtime/gguf_tokenizer.h"

namespace mambacpp {

State::State() : impl_(std::make_unique<Impl>()) {}
State::State(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
State::~State() = default;
State::State(State&& other) noexcept : impl_(std::make_unique<Impl>(std::move(*other.impl_))) {}
State& State::operator=(State&& other) noexcept {
  impl_->state = std::move(other.impl_->state);
  return *this;
}
int64_t State::batch() const {
  return impl_->state.batch;
}
int64_t State::position() const {
  return impl_->state.position;
}
int64_t State::bytes() const {
  return impl_->state.bytes();
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&& other) noexcept = default;
Model& Model::operator=(Model&& other) noexcept = default;

Model Model::load(const std::string& path, const LoadOptions& options) {
  return guard([&] {
    return Model(
        std::make_unique<Impl>(mamba::models::Model::load(path, {.gguf_mapped = options.gguf_mapped})));
  });
}
void Model::to(Device device) {
  guard([&] { impl_->model->to(to_internal(device)); });
}
Device Model::device() const {
  return to_public(impl_->model->device());
}
void Model::set_matmul_dtype(DType d) {
  guard([&] { impl_->model->set_matmul_dtype(to_internal(d)); });
}
int64_t Model::n_params() const {
  return impl_->model->n_params();
}
int64_t Model::d_model() const {
  return impl_->model->config().d_model;
}
int64_t Model::n_layer() const {
  return impl_->model->config().n_layer;
}
int64_t Model::vocab_size() const {
  return impl_->model->config().vocab_size;
}
int64_t Model::vocab_padded() const {
  return impl_->model->config().vocab_padded;
}
std::string Model::layer_kind() const {
  return mamba::models::mixer_kind_name(impl_->model->config().ssm_layer);
}
State Model::new_state(int64_t batch) const {
  return guard(
      [&] { return State(std::make_unique<State::Impl>(State::Impl{impl_->model->new_state(batch)})); });
}
Tensor Model::forward(Context& ctx, const Tensor& ids, State& state, int64_t num_last) const {
  return guard([&] {
    return wrap(impl_->model->forward(ctx.impl().exec, unwrap(ids), state.impl().state, num_last));
  });
}
Tensor Model::step(Context& ctx, const Tensor& ids, State& state) const {
  return guard([&] { return wrap(impl_->model->step(ctx.impl().exec, unwrap(ids), state.impl().state)); });
}

Model::Gradients Model::loss_and_grads(Context& ctx, const Tensor& ids) const {
  return guard([&] {
    const mamba::models::Model& model = *impl_->model;
    mamba::models::Model grads = model.new_grads();
    mamba::models::Activations acts;
    Gradients out;
    out.loss = model.loss_and_grads(ctx.impl().exec, unwrap(ids),
                                    mamba::models::next_token_targets(unwrap(ids)), grads, acts);
    grads.visit_params(
        [&](const mamba::models::ParamRef& p) { out.tensors.emplace_back(p.name, wrap(*p.tensor)); });
    return out;
  });
}

bool quantize(const Model& model, const std::string& source_dir, const std::string& output, DType weights,
              const std::function<void(const std::string&)>& on_warning) {
  return guard([&] {
    std::vector<std::pair<std::string, mamba::io::GgufValue>> vocab;
    if (!source_dir.ends_with(".gguf")) {
      try {
        vocab = mamba::runtime::gguf_tokenizer_metadata(source_dir);
      } catch (const mamba::Error& e) {
        if (on_warning) on_warning(e.what());
      }
    }
    unwrap(model).save_gguf(output, to_internal(weights), vocab);
    return !vocab.empty();
  });
}

std::vector<std::string> architecture_names() {
  std::vector<std::string> names;
  for (const mamba::models::ArchSpec* spec : mamba::models::architectures()) names.emplace_back(spec->name);
  return names;
}

}  // namespace mambacpp
