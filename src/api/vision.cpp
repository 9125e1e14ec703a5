// The public VimModel (vision.h) over models::VimModel and io/image.
#include <utility>

#include "internal.h"
#include "io/image.h"

namespace mambacpp {

struct VimModel::Impl {
  mamba::models::VimModel model;
  VimInfo info;
  explicit Impl(mamba::models::VimModel m) : model(std::move(m)) {
    const mamba::models::VimConfig& c = model.config();
    info = {.embed_dim = c.embed_dim,
            .depth = c.depth,
            .seq_len = c.seq_len,
            .img_size = c.img_size,
            .resize = c.resize,
            .crop = c.crop,
            .channels = c.channels,
            .num_classes = c.num_classes,
            .class_names = c.class_names};
  }
};

VimModel::VimModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VimModel::~VimModel() = default;
VimModel::VimModel(VimModel&& other) noexcept = default;
VimModel& VimModel::operator=(VimModel&& other) noexcept = default;

VimModel VimModel::load(const std::string& path) {
  return guard([&] { return VimModel(std::make_unique<Impl>(mamba::models::VimModel::load(path))); });
}
VimModel VimModel::random(int64_t embed_dim, uint64_t seed, const std::string& name) {
  return guard([&] {
    mamba::models::VimConfig c;
    c.embed_dim = embed_dim;
    c.finalize(name);
    return VimModel(std::make_unique<Impl>(mamba::models::VimModel::random(c, seed)));
  });
}
void VimModel::to(Device device) {
  guard([&] { impl_->model.to(to_internal(device)); });
}
Device VimModel::device() const {
  return to_public(impl_->model.device());
}
void VimModel::set_matmul_dtype(DType d) {
  guard([&] { impl_->model.set_matmul_dtype(to_internal(d)); });
}
int64_t VimModel::num_params() const {
  return impl_->model.num_params();
}
const VimInfo& VimModel::info() const {
  return impl_->info;
}
Tensor VimModel::preprocess(const std::string& image_path) const {
  return guard([&] {
    const mamba::models::VimConfig& c = impl_->model.config();
    const mamba::io::ImageTransform t{c.resize, c.crop, c.mean, c.std};
    return wrap(mamba::io::preprocess_image(mamba::io::read_image(image_path), t, image_path));
  });
}
Tensor VimModel::forward(Context& ctx, const Tensor& images) const {
  return guard([&] { return wrap(impl_->model.forward(ctx.impl().exec, unwrap(images))); });
}

}  // namespace mambacpp
