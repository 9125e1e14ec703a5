// The training loop (see trainer.h): one step, evaluation, checkpoints and the CSV log.
#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "ops/cross_entropy/cross_entropy.h"
#include "ops/device.h"
#include "ops/optim/optim.h"
#include "train/checkpoint.h"

namespace mamba::train {

using nlohmann::json;

namespace {

// Independent random streams of one seed: training batches and held-out evaluation batches.
constexpr uint64_t train_stream = 1, eval_stream = 2;
constexpr const char* format_tag = "mambacpp-train-1";
constexpr const char* csv_header =
    "step,lr,loss,acc,tokens_per_s,grad_norm,max_length,eval_acc,eval_scaled_acc\n";

// Answer positions (target >= 0) whose argmax over all logits columns is the target.
// logits: [batch, seq_len, vocab] f32 (device logits are copied to the host: the task
// vocabularies are small); targets: [batch, seq_len] i64 on the host.
int64_t count_correct(const Tensor& logits_in, const Tensor& targets, int64_t& counted) {
  const Tensor logits = logits_in.to(Device::cpu).contiguous();
  const int64_t vocab = logits.size(-1), rows = targets.numel();
  const float* x = logits.f32();
  const int64_t* tgt = targets.data<int64_t>();
  int64_t correct = 0;
  counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (tgt[r] < 0) continue;
    const float* row = x + r * vocab;
    int64_t best = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;
    correct += best == tgt[r];
    ++counted;
  }
  return correct;
}

}  // namespace

EvalStats evaluate(ops::Exec& exec, const models::Model& model, const Task& task, int64_t length,
                   int64_t batch, int64_t n_batches, uint64_t seed) {
  EvalStats out;
  out.length = nearest_valid_length(task, length);
  if (out.length < task.min_length())
    throw_error(ErrorCode::invalid_argument, task.name(), ": no valid evaluation length <= ", length);
  int64_t correct = 0;
  double loss_sum = 0;
  for (int64_t i = 0; i < n_batches; ++i) {
    Rng rng = Rng::for_index(seed, eval_stream, static_cast<uint64_t>(i));
    const Batch b = sample_batch(task, batch, out.length, out.length, rng);
    models::State state = model.new_state(batch);
    const Tensor logits = model.forward(exec, b.ids, state).to(Device::cpu);
    int64_t counted = 0;
    correct += count_correct(logits, b.targets, counted);
    loss_sum += ops::cross_entropy_fwd(exec, logits, b.targets) * static_cast<double>(counted);
    out.answers += counted;
  }
  const double n = static_cast<double>(std::max<int64_t>(out.answers, 1));
  out.loss = loss_sum / n;
  out.accuracy = static_cast<double>(correct) / n;
  out.scaled_accuracy = (out.accuracy - task.chance()) / (1.0 - task.chance());
  return out;
}

Trainer::Trainer(const TrainConfig& config, const TrainDevice& where) : config_(config), where_(where) {
  init();
  model_ =
      std::make_unique<models::Model>(models::Model::random(model_config_for(config_, *task_), config_.seed));
  place();
}

Trainer::Trainer(const TrainConfig& config, const std::string& checkpoint, const TrainDevice& where)
    : config_(config), where_(where) {
  init();
  const std::string dir = resolve_checkpoint(checkpoint);
  model_ = std::make_unique<models::Model>(models::Model::load(dir));
  const json expected = models::to_mamba_ssm_json(model_config_for(config_, *task_));
  if (expected != models::to_mamba_ssm_json(model_->config()))
    throw_error(ErrorCode::invalid_argument, dir,
                ": the checkpoint's model differs from the training config's model");
  place();
  optimizer_->load(path_join(dir, "optimizer.safetensors"));  // onto the moments' device
  step_ = optimizer_->steps();
}

Trainer::~Trainer() {
  if (log_) std::fclose(log_);
}

void Trainer::init() {
  validate(config_, "training config");
  const int ranks = where_.comm ? where_.comm->size() : 1;
  if (config_.batch % ranks != 0)
    throw_error(ErrorCode::invalid_argument, "train: the global batch ", config_.batch,
                " is not divisible by the ", ranks, " ranks (each rank takes batch / ranks rows)");
  if (config_.length_buckets > config_.batch / ranks)
    throw_error(ErrorCode::invalid_argument, "train: length_buckets ", config_.length_buckets,
                " exceeds the ", config_.batch / ranks, " rows a rank takes");
  if (where_.graph && config_.length_buckets > 1)
    throw_error(ErrorCode::invalid_argument, "train: length_buckets ", config_.length_buckets,
                " runs a batch as groups of eager steps; a captured step (--graph) records whole batches: "
                "use one or the other");
  exec_ = std::make_unique<ops::Exec>(where_.device, where_.plan);
  config_.schedule.total_steps = config_.steps;
  task_ = make_task(config_.task, config_.task_options);
}

void Trainer::place() {
  if (where_.matmul_dtype != DType::f32 && where_.device != Device::cuda)
    throw_error(ErrorCode::unsupported, "train: ", dtype_name(where_.matmul_dtype),
                " mixed precision runs on CUDA only (add --device cuda)");
  model_->to(where_.device);
  make_compute_model();
  grads_ = std::make_unique<models::Model>((compute_ ? *compute_ : *model_).new_grads());  // fp32
  dp_.reset();
  if (where_.comm && where_.comm->size() > 1) {
    dp_ = std::make_unique<DataParallel>(*where_.comm, *model_, where_.zero1, where_.bucket_elems);
    dp_->broadcast_params(*exec_, *model_);  // rank 0's weights everywhere (they agree already)
    refresh_compute_model();
  }
  if (dp_ && dp_->zero1())  // ZeRO-1: this rank's moments only
    optimizer_ = std::make_unique<AdamW>(*model_, config_.adamw, dp_->begin(), dp_->end(), dp_->capacity());
  else
    optimizer_ = std::make_unique<AdamW>(*model_, config_.adamw);  // beside the master
  if (graph_eligible()) optimizer_->use_device_scalars();          // read by the captured step's kernels
}

// Mixed precision: the optimizer updates the fp32 master (model_); forward and backward run on
// compute_, a second Model whose parameters share the master's buffers except the GEMM weights
// (in_proj, x_proj, dt_proj, out_proj, MLP, head), which Model::set_matmul_dtype holds as bf16
// copies: cuBLASLt then multiplies bf16 operands (x rounded to bf16 inside the linear op) with
// fp32 accumulation, and the Mamba-2/3 scans take their bf16 tensor-core path. The copies are
// refreshed from the master after each optimizer step. Gradients and moments stay fp32.
// A shadow copy rather than rounding inside the linear op: one rounding per weight per step
// instead of one per GEMM call (forward and backward), no change to the op layer, and an f32
// run pays nothing. A tied head stays the f32 embedding (Model::prepare re-ties it after
// set_matmul_dtype's bf16 copy), so that one GEMM runs in f32 on every step alike.
void Trainer::make_compute_model() {
  compute_.reset();
  if (where_.matmul_dtype == DType::f32) return;
  compute_ = std::make_unique<models::Model>(models::Model::random(model_->config(), 0));
  compute_->to(where_.device);
  std::vector<Tensor> master;
  model_->visit_params([&](const models::ParamRef& p) { master.push_back(*p.tensor); });
  size_t k = 0;
  compute_->visit_params([&](const models::ParamRef& p) { *p.tensor = master[k++]; });  // shared buffers
  compute_->params_updated(*exec_);
  compute_->set_matmul_dtype(where_.matmul_dtype);
  compute_->params_updated(*exec_);  // as after every refresh (the tied head back to the embedding)
}

void Trainer::refresh_compute_model() {
  if (!compute_) return;
  std::vector<Tensor> master;
  model_->visit_params([&](const models::ParamRef& p) { master.push_back(*p.tensor); });
  size_t k = 0;
  compute_->visit_params([&](const models::ParamRef& p) {
    const Tensor& m = master[k++];
    if (p.tensor->dtype() != m.dtype()) p.tensor->copy_from(m);  // f32 -> bf16 on the device
  });
  compute_->params_updated(*exec_);
}

namespace {

int64_t count_answers(const Tensor& targets) {
  int64_t counted = 0;
  const int64_t* tgt = targets.data<int64_t>();
  for (int64_t r = 0; r < targets.numel(); ++r) counted += tgt[r] >= 0;
  return counted;
}

// Rows of a batch run together: ids and targets [rows, longest row's length] and their answers.
struct RowGroup {
  Tensor ids, targets;
  int64_t count = 0;
};

// The batch's rows sorted by length (stable) and cut into `groups` groups of near-equal row counts,
// each group's columns cut to its longest row: what lies beyond a row's length is padding, which a
// causal model's outputs at the row's positions never see.
std::vector<RowGroup> length_groups(const Tensor& ids, const Tensor& targets,
                                    const std::vector<int64_t>& lengths, int64_t groups) {
  const int64_t rows = ids.size(0), width = ids.size(1);
  MAMBA_CHECK(static_cast<int64_t>(lengths.size()) == rows,
              "length_groups: " << lengths.size() << " lengths for " << rows << " rows");
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) order[static_cast<size_t>(r)] = r;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return lengths[static_cast<size_t>(a)] < lengths[static_cast<size_t>(b)];
  });
  groups = std::clamp<int64_t>(groups, 1, std::max<int64_t>(rows, 1));
  std::vector<RowGroup> out;
  int64_t first = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t n = rows / groups + (g < rows % groups ? 1 : 0);
    if (n == 0) continue;
    const int64_t len = std::clamp<int64_t>(
        lengths[static_cast<size_t>(order[static_cast<size_t>(first + n - 1)])], 1, width);
    RowGroup grp{Tensor::empty({n, len}, DType::i64), Tensor::empty({n, len}, DType::i64), 0};
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = order[static_cast<size_t>(first + i)];
      std::memcpy(grp.ids.data<int64_t>() + i * len, ids.data<int64_t>() + r * width, sizeof(int64_t) * len);
      std::memcpy(grp.targets.data<int64_t>() + i * len, targets.data<int64_t>() + r * width,
                  sizeof(int64_t) * len);
    }
    grp.count = count_answers(grp.targets);
    out.push_back(std::move(grp));
    first += n;
  }
  return out;
}

}  // namespace

StepStats Trainer::step() {
  launch_step();
  return finish_step();
}

void Trainer::launch_step() {
  MAMBA_CHECK(!pending_.active, "Trainer::launch_step twice without finish_step");
  const auto start = std::chrono::steady_clock::now();
  StepStats s;
  s.max_length = config_.curriculum.max_length(step_);
  // The global batch, the same on every rank; a rank of N takes rows [r·B/N, (r+1)·B/N).
  Rng rng = Rng::for_index(config_.seed, train_stream, static_cast<uint64_t>(step_));
  const Batch b = sample_batch(*task_, config_.batch, config_.curriculum.min_length, s.max_length, rng);
  Tensor ids = b.ids, targets = b.targets;
  std::vector<int64_t> lengths = b.lengths;
  const int64_t global_count = count_answers(b.targets);
  if (dp_) {
    const int64_t rows = config_.batch / dp_->size(), first = rows * dp_->rank();
    ids = b.ids.slice(0, first, first + rows).contiguous();
    targets = b.targets.slice(0, first, first + rows).contiguous();
    lengths.assign(b.lengths.begin() + first, b.lengths.begin() + first + rows);
  }
  s.lr = config_.schedule.at(step_);
  s.tokens = b.n_tokens;
  pending_ = {true, start, global_count, s};
  if (graph_eligible()) {
    optimizer_->advance(s.lr);
    launch_graph_step(ids, targets);  // finish_step reads its numbers
    return;
  }
  pending_.stats = eager_step(s, ids, targets, lengths, global_count, start);
  pending_.done = true;
}

StepStats Trainer::finish_step() {
  MAMBA_CHECK(pending_.active, "Trainer::finish_step without launch_step");
  pending_.active = false;
  StepStats s = pending_.stats;
  if (pending_.done) return s;
  const std::array<double, 3> v = finish_graph_step();
  s.loss = v[0];
  s.accuracy = pending_.global_count > 0 ? v[1] / static_cast<double>(pending_.global_count) : 0.0;
  s.grad_norm = std::sqrt(v[2]);
  s.step = ++step_;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - pending_.start).count();
  return s;
}

StepStats Trainer::eager_step(StepStats s, const Tensor& ids, const Tensor& targets,
                              const std::vector<int64_t>& lengths, int64_t global_count,
                              std::chrono::steady_clock::time_point start) {
  std::vector<RowGroup> groups;
  if (config_.length_buckets > 1)
    groups = length_groups(ids, targets, lengths, config_.length_buckets);
  else
    groups.push_back({ids, targets, dp_ ? count_answers(targets) : global_count});
  ops::Exec& exec = *exec_;
  const ops::ExecScope bind(exec);  // the step's copies too
  zero_grads(exec, *grads_);
  const models::Model& net = compute_ ? *compute_ : *model_;
  // Mean cross-entropy over the answer positions only (targets −1 elsewhere). The loss, the
  // correct count and the gradient norm stay on the model's device until the step's end, where one
  // copy brings them all back: on CUDA the step syncs the host once, not per loss read, logits
  // read and parameter norm.
  // A group's loss is the mean over its own answers (so is a data-parallel rank's); weighting it
  // (and so its gradient) by its answers / the global batch's makes the sum over groups and ranks
  // the one-process mean over the global batch's answers, whatever the split of the answers.
  const bool weighted = dp_ || groups.size() > 1;
  std::vector<double> weights;
  Tensor ces = Tensor::empty({static_cast<int64_t>(groups.size()) * 2 + 1}, DType::i64, where_.device);
  for (size_t g = 0; g < groups.size(); ++g) {
    const double weight = weighted ? static_cast<double>(groups[g].count) /
                                         static_cast<double>(std::max<int64_t>(global_count, 1))
                                   : 1.0;
    weights.push_back(weight);
    const Tensor logits = net.forward_train(exec, groups[g].ids, acts_);
    Tensor dlogits;
    const Tensor ce = ops::cross_entropy_train(exec, logits, groups[g].targets, dlogits);  // {loss, correct}
    if (weighted) ops::scale_(exec, dlogits, weight);
    net.backward(exec, dlogits, acts_, *grads_);
    ces.slice(0, static_cast<int64_t>(2 * g), static_cast<int64_t>(2 * g + 2)).copy_from(ce);
  }
  Tensor norm_sq;
  if (dp_ && dp_->zero1()) {
    // ZeRO-1: this rank's range of the summed gradient; the global norm from the ranks' partial
    // sums of squares; AdamW on the range; then every rank gathers the updated parameters.
    Tensor shard = dp_->reduce_scatter_grads(exec, *grads_);
    norm_sq = ops::sum_squares_total(exec, {shard});
    where_.comm->all_reduce_sum(norm_sq);
    if (config_.clip > 0) ops::clip_scale_(exec, shard, norm_sq, config_.clip);
    optimizer_->step_flat(exec, *model_, shard, s.lr);
    dp_->all_gather_params(exec, *model_);
  } else {
    if (dp_) dp_->all_reduce_grads(exec, *grads_);  // every rank then holds the same gradients
    norm_sq = clip_grad_norm_sq(exec, *grads_, config_.clip);
    optimizer_->step(exec, *model_, *grads_, s.lr);
  }
  model_->params_updated(exec);
  refresh_compute_model();
  // 8-byte slots holding doubles: {loss, correct} per group, then the squared gradient norm.
  const int64_t n_groups = static_cast<int64_t>(groups.size());
  ces.slice(0, 2 * n_groups, 2 * n_groups + 1).copy_from(norm_sq);
  const Tensor host = ces.to(Device::cpu);  // synchronizes: the step's time includes its device work
  ops::device_synchronize(where_.device);
  const double* v = static_cast<const double*>(host.raw());
  double loss = 0, correct = 0;
  for (int64_t g = 0; g < n_groups; ++g) {
    loss += weighted ? v[2 * g] * weights[static_cast<size_t>(g)] : v[2 * g];
    correct += v[2 * g + 1];
  }
  if (dp_) {  // the global batch's loss (Σ of the weighted rank losses) and correct count
    const std::vector<double> sums = where_.comm->all_reduce_sum(std::vector<double>{loss, correct});
    loss = sums[0];
    correct = sums[1];
  }
  s.loss = loss;
  s.accuracy = global_count > 0 ? correct / static_cast<double>(global_count) : 0.0;
  s.grad_norm = std::sqrt(v[2 * n_groups]);
  s.step = ++step_;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

EvalStats Trainer::evaluate_now() const {
  const int64_t length = config_.eval_length > 0 ? config_.eval_length : config_.curriculum.end_max;
  const int64_t batch = config_.eval_batch > 0 ? config_.eval_batch : config_.batch;
  // The fp32 master: a mixed-precision run evaluates the weights its checkpoints hold.
  return evaluate(*exec_, *model_, *task_, length, batch, config_.eval_batches, config_.seed);
}

// Data parallel: every rank calls this (ZeRO-1 gathers the moments, a collective); rank 0 alone
// writes, the full unsharded state, so the checkpoint resumes on any number of ranks; the others
// wait at a barrier until it is in place. Returns the folder on every rank.
std::string Trainer::save_checkpoint() const {
  MAMBA_CHECK(!config_.checkpoint_dir.empty());
  std::pair<Tensor, Tensor> moments;
  if (dp_ && dp_->zero1()) moments = dp_->gather_moments(*optimizer_);
  if (dp_ && dp_->rank() != 0) {
    where_.comm->barrier();
    return path_join(config_.checkpoint_dir, checkpoint_name(step_));
  }
  const std::string written =
      write_checkpoint(config_.checkpoint_dir, step_, config_.keep_checkpoints, [&](const std::string& dir) {
        model_->save(dir);
        // A byte-level model names its tokenizer in config.json, so `generate`, `chat` and `serve`
        // take text without a tokenizer.json (runtime::load_tokenizer reads the key).
        if (task_->name() == "text") {
          const std::string file = path_join(dir, "config.json");
          json model_config = json::parse(read_file(file));
          model_config["tokenizer"] = "byte";
          write_file_atomic(file, model_config.dump(4) + "\n");
        }
        // Batch i is a function of (seed, i): the data position is the step.
        const std::map<std::string, std::string> meta = {{"format", format_tag},
                                                         {"data_seed", std::to_string(config_.seed)},
                                                         {"data_step", std::to_string(step_)}};
        if (moments.first.defined())
          optimizer_->save_full(path_join(dir, "optimizer.safetensors"), meta, moments.first, moments.second);
        else
          optimizer_->save(path_join(dir, "optimizer.safetensors"), meta);
        const json trainer = {{"format", format_tag}, {"step", step_}, {"config", to_json(config_)}};
        write_file_atomic(path_join(dir, "trainer.json"), trainer.dump(2) + "\n");
      });
  if (dp_) where_.comm->barrier();
  return written;
}

// A fresh run starts the log; a resumed one keeps the rows up to its step (rows written after
// the checkpoint by an interrupted run are dropped) and appends.
void Trainer::open_log() {
  if (config_.log_csv.empty() || log_ || rank() != 0) return;
  const std::filesystem::path parent = std::filesystem::path(config_.log_csv).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::string kept = csv_header;
  if (step_ > 0 && file_exists(config_.log_csv)) {
    std::istringstream in(read_file(config_.log_csv));
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const long long row_step = std::atoll(line.c_str());
      if (row_step <= step_) kept += line + "\n";
    }
  }
  write_file_atomic(config_.log_csv, kept);
  log_ = std::fopen(config_.log_csv.c_str(), "a");
  if (!log_) throw_error(ErrorCode::io, config_.log_csv, ": cannot open the log for appending");
}

void Trainer::log_row(const StepStats& s, const EvalStats* eval) {
  if (!log_) return;
  const double tps = s.seconds > 0 ? static_cast<double>(s.tokens) / s.seconds : 0.0;
  std::fprintf(log_, "%lld,%.6g,%.6f,%.4f,%.1f,%.4g,%lld,", static_cast<long long>(s.step), s.lr, s.loss,
               s.accuracy, tps, s.grad_norm, static_cast<long long>(s.max_length));
  if (eval)
    std::fprintf(log_, "%.4f,%.4f\n", eval->accuracy, eval->scaled_accuracy);
  else
    std::fprintf(log_, ",\n");
  std::fflush(log_);
}

void Trainer::begin_run() {
  open_log();
}

void Trainer::after_step(const StepStats& s, const RunCallbacks& cb) {
  const bool last = step_ == config_.steps;
  EvalStats eval;
  // Evaluation on rank 0 only (the others go on to the next step's collectives and wait there).
  const bool do_eval = rank() == 0 && (last || (config_.eval_every > 0 && step_ % config_.eval_every == 0));
  if (do_eval) {
    eval = evaluate_now();
    if (cb.on_eval) cb.on_eval(step_, eval);
  }
  log_row(s, do_eval ? &eval : nullptr);
  const bool do_save = !config_.checkpoint_dir.empty() &&
                       (last || (config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0));
  if (do_save) {
    const std::string dir = save_checkpoint();
    if (cb.on_checkpoint) cb.on_checkpoint(dir);
  }
}

void Trainer::run(const RunCallbacks& cb) {
  begin_run();
  while (step_ < config_.steps) {
    const StepStats s = step();
    if (cb.on_step) cb.on_step(s);
    after_step(s, cb);
  }
}

TrainConfig load_checkpoint_config(const std::string& checkpoint) {
  const std::string file = path_join(resolve_checkpoint(checkpoint), "trainer.json");
  const json j = read_json_file(file);
  if (!j.is_object() || !j.contains("config"))
    throw_error(ErrorCode::parse, file, ": expected an object with a 'config' field");
  return parse_train_config(j.at("config"), file + " (config)");
}

}  // namespace mamba::train
