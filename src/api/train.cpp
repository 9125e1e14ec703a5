// The public training API (train.h) over train:: and dist::.
#include <utility>

#include "core/file_util.h"
#include "internal.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

namespace mambacpp::dist {

struct Communicator::Impl {
  std::unique_ptr<mamba::dist::Communicator> comm;
};
Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Communicator::~Communicator() = default;
int Communicator::rank() const {
  return impl_->comm->rank();
}
int Communicator::size() const {
  return impl_->comm->size();
}
std::string Communicator::name() const {
  return impl_->comm->name();
}
std::unique_ptr<Communicator> make_communicator(const DistConfig& c, Device device) {
  return guard([&] {
    const mamba::dist::DistConfig inner{.rank = c.rank,
                                        .size = c.size,
                                        .local_rank = c.local_rank,
                                        .addr = c.addr,
                                        .port = c.port,
                                        .timeout_s = c.timeout_s,
                                        .backend = c.backend};
    return std::make_unique<Communicator>(std::make_unique<Communicator::Impl>(
        Communicator::Impl{mamba::dist::make_communicator(inner, to_internal(device))}));
  });
}

int free_loopback_port() {
  return guard([] { return mamba::dist::free_loopback_port(); });
}

}  // namespace mambacpp::dist

namespace mambacpp::train {

namespace mt = mamba::train;

struct Config::Impl {
  mt::TrainConfig config;
};
Config::Config() : impl_(std::make_unique<Impl>()) {}
Config::~Config() = default;
Config::Config(const Config& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Config& Config::operator=(const Config& other) {
  *impl_ = *other.impl_;
  return *this;
}
Config Config::load(const std::string& path) {
  return guard([&] {
    Config c;
    c.impl_->config = mt::load_train_config(path);
    return c;
  });
}
Config Config::from_checkpoint(const std::string& path) {
  return guard([&] {
    Config c;
    c.impl_->config = mt::load_checkpoint_config(path);
    return c;
  });
}

namespace {
template <typename T>
void set_if(const std::optional<T>& flag, T& field) {
  if (flag) field = *flag;
}
}  // namespace

void Config::apply(const Overrides& f) {
  guard([&] {
    mt::TrainConfig& c = impl_->config;
    nlohmann::json& m = c.model;
    auto set = [](nlohmann::json& j, const char* key, const auto& v) {
      if (v) j[key] = *v;
    };
    set(m, "d_model", f.d_model);
    set(m, "n_layer", f.n_layer);
    set(m, "d_intermediate", f.d_intermediate);
    nlohmann::json& ssm = m["ssm_cfg"];
    if (!ssm.is_object()) ssm = nlohmann::json::object();
    set(ssm, "layer", f.layer);
    set(ssm, "d_state", f.d_state);
    set(ssm, "headdim", f.headdim);
    set(ssm, "expand", f.expand);
    set(ssm, "chunk_size", f.chunk_size);
    set(ssm, "is_mimo", f.mimo);
    set(ssm, "mimo_rank", f.mimo_rank);
    set(ssm, "rope_mode", f.rope);
    set_if(f.task, c.task);
    if (!f.text_files.empty()) c.task_options.text_files = f.text_files;
    set_if(f.n_data, c.task_options.n_data);
    set_if(f.mqar_vocab, c.task_options.vocab);
    set_if(f.mqar_pairs, c.task_options.n_pairs);
    set_if(f.group_order, c.task_options.group_order);
    if (f.length) {
      c.curriculum.min_length = c.curriculum.start_max = c.curriculum.end_max = *f.length;
      c.curriculum.n_stages = 1;
    }
    set_if(f.min_length, c.curriculum.min_length);
    set_if(f.start_max, c.curriculum.start_max);
    set_if(f.max_length, c.curriculum.end_max);
    set_if(f.stages, c.curriculum.n_stages);
    set_if(f.steps_per_stage, c.curriculum.steps_per_stage);
    set_if(f.batch, c.batch);
    set_if(f.length_buckets, c.length_buckets);
    set_if(f.steps, c.steps);
    set_if(f.lr, c.schedule.lr);
    if (f.schedule) c.schedule.kind = mt::parse_schedule_kind(*f.schedule);
    set_if(f.warmup, c.schedule.warmup_steps);
    set_if(f.min_lr, c.schedule.min_lr);
    set_if(f.weight_decay, c.adamw.weight_decay);
    set_if(f.clip, c.clip);
    set_if(f.beta1, c.adamw.beta1);
    set_if(f.beta2, c.adamw.beta2);
    if (f.seed) {
      if (*f.seed < 0)
        mamba::throw_error(mamba::ErrorCode::invalid_argument, "--seed expected >= 0, found ", *f.seed);
      c.seed = static_cast<uint64_t>(*f.seed);
    }
    set_if(f.eval_every, c.eval_every);
    set_if(f.eval_length, c.eval_length);
    set_if(f.eval_batches, c.eval_batches);
    set_if(f.checkpoint_dir, c.checkpoint_dir);
    set_if(f.checkpoint_every, c.checkpoint_every);
    set_if(f.keep_checkpoints, c.keep_checkpoints);
    set_if(f.log, c.log_csv);
    mt::validate(c, "command line");
  });
}
std::string Config::to_json(int indent) const {
  return mt::to_json(impl_->config).dump(indent);
}
const std::string& Config::task() const {
  return impl_->config.task;
}
int64_t Config::batch() const {
  return impl_->config.batch;
}
int64_t Config::steps() const {
  return impl_->config.steps;
}
uint64_t Config::seed() const {
  return impl_->config.seed;
}
double Config::lr() const {
  return impl_->config.schedule.lr;
}
int64_t Config::max_length() const {
  return impl_->config.curriculum.end_max;
}
const std::string& Config::checkpoint_dir() const {
  return impl_->config.checkpoint_dir;
}
const std::string& Config::log_csv() const {
  return impl_->config.log_csv;
}

std::vector<std::string> task_names() {
  return mt::task_names();
}
std::string resolve_model_dir(const std::string& path) {
  return guard([&] { return mt::resolve_model_dir(path); });
}
std::string checkpoint_task(const std::string& dir) {
  return guard([&] { return mt::load_checkpoint_config(dir).task; });
}

namespace {
StepStats to_public(const mt::StepStats& s) {
  return {.step = s.step,
          .lr = s.lr,
          .loss = s.loss,
          .accuracy = s.accuracy,
          .grad_norm = s.grad_norm,
          .max_length = s.max_length,
          .tokens = s.tokens,
          .seconds = s.seconds};
}
EvalStats to_public(const mt::EvalStats& e) {
  return {.length = e.length,
          .loss = e.loss,
          .accuracy = e.accuracy,
          .scaled_accuracy = e.scaled_accuracy,
          .answers = e.answers};
}
mt::TrainDevice to_internal(const Placement& p) {
  mt::TrainDevice d;
  d.device = mambacpp::to_internal(p.device);
  d.matmul_dtype = mambacpp::to_internal(p.matmul_dtype);
  d.plan = p.plan.impl().plan;
  d.comm = p.comm ? p.comm->impl().comm.get() : nullptr;
  d.zero1 = p.zero1;
  d.graph = p.graph;
  return d;
}
mt::RunCallbacks to_internal(const RunCallbacks& cb) {
  mt::RunCallbacks out;
  if (cb.on_step) out.on_step = [&cb](const mt::StepStats& s) { cb.on_step(to_public(s)); };
  if (cb.on_eval)
    out.on_eval = [&cb](int64_t step, const mt::EvalStats& e) { cb.on_eval(step, to_public(e)); };
  out.on_checkpoint = cb.on_checkpoint;
  return out;
}
}  // namespace

// A trainer, owned or one of a PackedTrainer's; its model and config as public handles.
struct Trainer::Impl {
  std::unique_ptr<mt::Trainer> owned;
  mt::Trainer* trainer;
  Model model;
  Config config;
  explicit Impl(mt::Trainer* t)
      : trainer(t), model(std::make_unique<Model::Impl>(const_cast<mamba::models::Model*>(&t->model()))) {
    config.impl().config = t->config();
  }
  explicit Impl(std::unique_ptr<mt::Trainer> t) : Impl(t.get()) { owned = std::move(t); }
};
Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::Trainer(const Config& config, const Placement& where)
    : impl_(guard([&] {
        return std::make_unique<Impl>(
            std::make_unique<mt::Trainer>(config.impl().config, to_internal(where)));
      })) {}
Trainer::Trainer(const Config& config, const std::string& checkpoint, const Placement& where)
    : impl_(guard([&] {
        return std::make_unique<Impl>(
            std::make_unique<mt::Trainer>(config.impl().config, checkpoint, to_internal(where)));
      })) {}
Trainer::~Trainer() = default;
Trainer::Trainer(Trainer&& other) noexcept = default;
Trainer& Trainer::operator=(Trainer&& other) noexcept = default;
void Trainer::run(const RunCallbacks& callbacks) {
  guard([&] { impl_->trainer->run(to_internal(callbacks)); });
}
int64_t Trainer::steps_done() const {
  return impl_->trainer->steps_done();
}
const Model& Trainer::model() const {
  return impl_->model;
}
const Config& Trainer::config() const {
  impl_->config.impl().config = impl_->trainer->config();
  return impl_->config;
}
int64_t Trainer::graph_replays() const {
  return impl_->trainer->graph_replays();
}

std::vector<RunSpec> sweep_grid(const std::vector<uint64_t>& seeds, const std::vector<double>& lrs) {
  std::vector<RunSpec> out;
  for (const mt::RunSpec& r : guard([&] { return mt::sweep_grid(seeds, lrs); }))
    out.push_back({r.seed, r.lr});
  return out;
}
std::vector<RunSpec> load_sweep(const std::string& path) {
  std::vector<RunSpec> out;
  for (const mt::RunSpec& r : guard([&] { return mt::load_sweep(path); })) out.push_back({r.seed, r.lr});
  return out;
}
std::string run_name(const RunSpec& run) {
  return mt::run_name({run.seed, run.lr});
}

struct PackedTrainer::Impl {
  mt::PackedTrainer packed;
  std::vector<RunSpec> specs;
  std::vector<Trainer> trainers;
};
PackedTrainer::PackedTrainer(const Config& base, const std::vector<RunSpec>& runs, const Placement& where)
    : impl_(guard([&] {
        std::vector<mt::RunSpec> inner;
        for (const RunSpec& r : runs) inner.push_back({r.seed, r.lr});
        auto impl = std::unique_ptr<Impl>(
            new Impl{mt::PackedTrainer(base.impl().config, inner, to_internal(where)), runs, {}});
        for (size_t i = 0; i < impl->packed.size(); ++i)
          impl->trainers.emplace_back(std::make_unique<Trainer::Impl>(&impl->packed.trainer(i)));
        return impl;
      })) {}
PackedTrainer::~PackedTrainer() = default;
void PackedTrainer::run(const PackedCallbacks& cb) {
  mt::PackedCallbacks inner;
  if (cb.on_step)
    inner.on_step = [&cb](size_t run, const mt::StepStats& s) { cb.on_step(run, to_public(s)); };
  if (cb.on_eval)
    inner.on_eval = [&cb](size_t run, int64_t step, const mt::EvalStats& e) {
      cb.on_eval(run, step, to_public(e));
    };
  inner.on_packed_step = cb.on_packed_step;
  guard([&] { impl_->packed.run(inner); });
}
size_t PackedTrainer::size() const {
  return impl_->packed.size();
}
Trainer& PackedTrainer::trainer(size_t i) {
  return impl_->trainers[i];
}
const RunSpec& PackedTrainer::spec(size_t i) const {
  return impl_->specs[i];
}
std::vector<EvalStats> PackedTrainer::last_evals() const {
  std::vector<EvalStats> out;
  for (const mt::EvalStats& e : impl_->packed.last_evals()) out.push_back(to_public(e));
  return out;
}
std::vector<StepStats> PackedTrainer::last_steps() const {
  std::vector<StepStats> out;
  for (const mt::StepStats& s : impl_->packed.last_steps()) out.push_back(to_public(s));
  return out;
}

struct Task::Impl {
  std::unique_ptr<mt::Task> task;
};
Task::Task(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Task::~Task() = default;
Task::Task(Task&& other) noexcept = default;
Task Task::for_model(const std::string& dir, const std::optional<std::string>& task, const TaskOverrides& f) {
  return guard([&] {
    mt::TaskOptions options;
    std::string name;
    if (mamba::file_exists(mamba::path_join(dir, "trainer.json"))) {
      const mt::TrainConfig c = mt::load_checkpoint_config(dir);
      options = c.task_options;
      name = c.task;
    }
    if (task) name = *task;
    if (name.empty())
      mamba::throw_error(mamba::ErrorCode::invalid_argument, "eval: --task is required (", dir,
                         " holds no trainer.json)");
    set_if(f.mqar_vocab, options.vocab);
    set_if(f.mqar_pairs, options.n_pairs);
    set_if(f.n_data, options.n_data);
    set_if(f.group_order, options.group_order);
    if (!f.text_files.empty()) options.text_files = f.text_files;
    return Task(std::make_unique<Impl>(Impl{mt::make_task(name, options)}));
  });
}
std::string Task::name() const {
  return impl_->task->name();
}
int64_t Task::vocab_size() const {
  return impl_->task->vocab_size();
}
int64_t Task::default_length() const {
  return impl_->task->default_length();
}
double Task::chance() const {
  return impl_->task->chance();
}

EvalStats evaluate(Context& ctx, const Model& model, const Task& task, int64_t length, int64_t batch,
                   int64_t n_batches, uint64_t seed) {
  return guard([&] {
    return to_public(
        mt::evaluate(ctx.impl().exec, unwrap(model), *task.impl().task, length, batch, n_batches, seed));
  });
}

}  // namespace mambacpp::train
