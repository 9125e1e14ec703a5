// Data-parallel exchanges (see data_parallel.h).
#include "train/data_parallel.h"

#include <algorithm>

#include "core/error.h"

namespace mamba::train {

DataParallel::DataParallel(dist::Communicator& comm, models::Model& params, bool zero1, int64_t bucket_elems)
    : comm_(comm),
      zero1_(zero1),
      bucket_elems_(std::max<int64_t>(bucket_elems, 1)),
      layout_(FlatLayout::of(params)) {
  const int64_t n = comm_.size();
  capacity_ = (layout_.total + n - 1) / n;
  begin_ = std::min(layout_.total, capacity_ * comm_.rank());
  end_ = std::min(layout_.total, begin_ + capacity_);
  Device device = Device::cpu;
  params.visit_params([&](const models::ParamRef& p) { device = p.tensor->device(); });
  flat_ = Tensor::zeros({capacity_ * n}, DType::f32, device);
}

// Parameters (or gradients, which new_grads lays out alike) in FlatLayout order. The copies are
// device-to-device on the Exec's stream; the tail beyond total stays zero.
void DataParallel::pack(models::Model& model, Tensor& flat) const {
  size_t k = 0;
  model.visit_params([&](const models::ParamRef& p) {
    const FlatLayout::Entry& e = layout_.entries[k++];
    MAMBA_CHECK(p.tensor->numel() == e.numel, e.name);
    Tensor dst = flat.slice(0, e.offset, e.offset + e.numel);
    dst.copy_from(p.tensor->contiguous().view({e.numel}));
  });
}

void DataParallel::unpack(const Tensor& flat, models::Model& model) const {
  size_t k = 0;
  model.visit_params([&](const models::ParamRef& p) {
    const FlatLayout::Entry& e = layout_.entries[k++];
    Tensor dst = p.tensor->view({e.numel});
    dst.copy_from(flat.slice(0, e.offset, e.offset + e.numel));
  });
}

void DataParallel::broadcast_params(ops::Exec& exec, models::Model& params) {
  if (size() == 1) return;
  const ops::ExecScope bind(exec);
  pack(params, flat_);
  exec.synchronize();
  comm_.broadcast(flat_, 0);
  unpack(flat_, params);
  params.params_updated(exec);
}

void DataParallel::all_reduce_grads(ops::Exec& exec, models::Model& grads) {
  if (size() == 1) return;
  const ops::ExecScope bind(exec);
  pack(grads, flat_);
  exec.synchronize();
  for (int64_t b = 0; b < layout_.total; b += bucket_elems_) {
    Tensor bucket = flat_.slice(0, b, std::min(layout_.total, b + bucket_elems_));
    comm_.all_reduce_sum(bucket);
  }
  unpack(flat_, grads);
}

Tensor DataParallel::reduce_scatter_grads(ops::Exec& exec, models::Model& grads) {
  const ops::ExecScope bind(exec);
  pack(grads, flat_);
  exec.synchronize();
  const int64_t r = rank();
  Tensor mine = flat_.slice(0, r * capacity_, (r + 1) * capacity_);
  comm_.reduce_scatter_sum(flat_, mine);  // in place: this rank's slice holds its sum
  return mine.slice(0, 0, end_ - begin_);
}

void DataParallel::all_gather_params(ops::Exec& exec, models::Model& params) {
  const ops::ExecScope bind(exec);
  pack(params, flat_);  // this rank's range is the updated one; the rest is overwritten
  exec.synchronize();
  const int64_t r = rank();
  Tensor mine = flat_.slice(0, r * capacity_, (r + 1) * capacity_);
  comm_.all_gather(mine, flat_);
  unpack(flat_, params);
}

std::pair<Tensor, Tensor> DataParallel::gather_moments(const AdamW& optimizer) {
  MAMBA_CHECK(optimizer.begin() == begin_ && optimizer.end() == end_ &&
              optimizer.flat_m().numel() == capacity_);
  const Device device = optimizer.flat_m().device();
  Tensor m = Tensor::empty({capacity_ * size()}, DType::f32, device);
  Tensor v = Tensor::empty({capacity_ * size()}, DType::f32, device);
  comm_.all_gather(optimizer.flat_m(), m);
  comm_.all_gather(optimizer.flat_v(), v);
  return {m, v};
}

}  // namespace mamba::train
