// mambacpp public API: training from scratch (`mambacpp train`, `mambacpp eval`): a config (model
// shape, task and curriculum, AdamW and schedule, evaluation, checkpoints, log), the Trainer's
// loop, packed runs (seeds x learning rates stepped together), data parallelism over ranks.
//
//   auto config = mambacpp::train::Config::load("parity.json");  // or Config() and apply()
//   mambacpp::train::Trainer trainer(config);                     // (config, "ckpt/") resumes
//   trainer.run();                                                 // steps, evals, checkpoints
//
// A Trainer owns its model, optimizer and Context: one thread drives it.
#pragma once
#include <mambacpp/common.h>
#include <mambacpp/model.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mambacpp::dist {

// One rank of a data-parallel run (docs/distributed.md).
struct DistConfig {
  int rank = 0, size = 1;
  int local_rank = 0;              // rank within the host: its GPU index
  std::string addr = "127.0.0.1";  // rank 0's address (the rendezvous)
  int port = 29500;                // rank 0's TCP port
  double timeout_s = 60;           // connecting and waiting for a peer's data
  std::string backend = "auto";    // auto (nccl for CUDA, socket for CPU), socket or nccl
};

// The collectives between the ranks (all-reduce of gradients, ZeRO-1's shards).
class Communicator {
public:
  ~Communicator();
  int rank() const;
  int size() const;
  std::string name() const;  // "single", "socket", "nccl"

  struct Impl;
  Impl& impl() { return *impl_; }
  explicit Communicator(std::unique_ptr<Impl> impl);

private:
  std::unique_ptr<Impl> impl_;
};

// Connects this rank to the others (on CUDA it also selects the rank's GPU).
std::unique_ptr<Communicator> make_communicator(const DistConfig& config, Device device);
// A free TCP port on the loopback interface (a one-host launcher's rendezvous).
int free_loopback_port();

}  // namespace mambacpp::dist

namespace mambacpp::train {

// Changes to a config, each applied when set (the flags of `mambacpp train`).
struct Overrides {
  // Model shape (ssm_cfg fields of a state-spaces/mamba config.json).
  std::optional<std::string> layer, rope;
  std::optional<int64_t> d_model, n_layer, d_state, headdim, mimo_rank, d_intermediate, chunk_size;
  std::optional<double> expand;
  std::optional<bool> mimo;
  // Task and curriculum (length: min = start max = max, one stage).
  std::optional<std::string> task;
  std::vector<std::string> text_files;
  std::optional<int64_t> n_data, mqar_vocab, mqar_pairs, group_order;
  std::optional<int64_t> length, min_length, start_max, max_length, stages, steps_per_stage;
  // Optimization.
  std::optional<int64_t> batch, steps, warmup, seed, length_buckets;
  std::optional<double> lr, min_lr, weight_decay, clip, beta1, beta2;
  std::optional<std::string> schedule;  // constant or cosine
  // Evaluation, checkpoints, log.
  std::optional<int64_t> eval_every, eval_length, eval_batches, checkpoint_every, keep_checkpoints;
  std::optional<std::string> checkpoint_dir, log;
};

class Config {
public:
  Config();  // the defaults (parity on a 1-layer Mamba-3)
  ~Config();
  Config(const Config& other);
  Config& operator=(const Config& other);

  static Config load(const std::string& path);             // a JSON config (unknown fields: Error)
  static Config from_checkpoint(const std::string& path);  // the trainer.json of a checkpoint
  void apply(const Overrides& overrides);                  // then validates (Error naming the field)
  std::string to_json(int indent = 2) const;

  const std::string& task() const;
  int64_t batch() const;
  int64_t steps() const;
  uint64_t seed() const;
  double lr() const;
  int64_t max_length() const;  // the curriculum's last stage
  const std::string& checkpoint_dir() const;
  const std::string& log_csv() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }
  Impl& impl() { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

std::vector<std::string> task_names();
// The model folder of a path: a checkpoint ROOT's latest step, else the path.
std::string resolve_model_dir(const std::string& path);
// The task a checkpoint was trained on (its trainer.json).
std::string checkpoint_task(const std::string& dir);

struct StepStats {
  int64_t step = 0;  // steps done, this one included
  double lr = 0, loss = 0, accuracy = 0, grad_norm = 0;
  int64_t max_length = 0;  // curriculum maximum at this step
  int64_t tokens = 0;      // non-pad positions of the batch
  double seconds = 0;      // wall time of the step
};

struct EvalStats {
  int64_t length = 0;
  double loss = 0, accuracy = 0, scaled_accuracy = 0;  // accuracies in [0, 1]
  int64_t answers = 0;
};

// Where a run computes (not saved in checkpoints).
struct Placement {
  Device device = Device::cpu;
  DType matmul_dtype = DType::f32;  // bf16: mixed precision (CUDA)
  KernelPlan plan = {};
  dist::Communicator* comm = nullptr;  // not owned; outlives the Trainer
  bool zero1 = false;                  // shard the AdamW moments across the ranks
  bool graph = false;                  // CUDA: replay captured training steps
};

struct RunCallbacks {
  std::function<void(const StepStats&)> on_step;
  std::function<void(int64_t step, const EvalStats&)> on_eval;
  std::function<void(const std::string& dir)> on_checkpoint;
};

class Trainer {
public:
  explicit Trainer(const Config& config, const Placement& where = {});
  Trainer(const Config& config, const std::string& checkpoint, const Placement& where = {});  // resumes
  ~Trainer();
  Trainer(Trainer&& other) noexcept;
  Trainer& operator=(Trainer&& other) noexcept;

  void run(const RunCallbacks& callbacks = {});
  int64_t steps_done() const;
  const Model& model() const;
  const Config& config() const;
  int64_t graph_replays() const;

  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);

private:
  std::unique_ptr<Impl> impl_;
};

// Packed runs: one per (seed, lr), each with its own weights, batches, log and checkpoints
// (checkpoint_dir/<run_name>).
struct RunSpec {
  uint64_t seed = 0;
  double lr = 1e-3;
};
std::vector<RunSpec> sweep_grid(const std::vector<uint64_t>& seeds, const std::vector<double>& lrs);
std::vector<RunSpec> load_sweep(const std::string& path);  // {"seeds", "lrs"} or [{"seed", "lr"}, ...]
std::string run_name(const RunSpec& run);

struct PackedCallbacks {
  std::function<void(size_t run, const StepStats&)> on_step;
  std::function<void(size_t run, int64_t step, const EvalStats&)> on_eval;
  std::function<void(int64_t packed_step, double seconds, int64_t tokens)> on_packed_step;
};

class PackedTrainer {
public:
  PackedTrainer(const Config& base, const std::vector<RunSpec>& runs, const Placement& where);
  ~PackedTrainer();
  void run(const PackedCallbacks& callbacks = {});
  size_t size() const;
  Trainer& trainer(size_t i);
  const RunSpec& spec(size_t i) const;
  std::vector<EvalStats> last_evals() const;
  std::vector<StepStats> last_steps() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// A task's held-out batches, for `mambacpp eval`.
struct TaskOverrides {
  std::optional<int64_t> mqar_vocab, mqar_pairs, n_data, group_order;
  std::vector<std::string> text_files;
};
class Task {
public:
  // `name`, else the task of dir's trainer.json, with its options, then `overrides`.
  static Task for_model(const std::string& dir, const std::optional<std::string>& name,
                        const TaskOverrides& overrides);
  ~Task();
  Task(Task&& other) noexcept;
  std::string name() const;
  int64_t vocab_size() const;
  int64_t default_length() const;
  double chance() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

private:
  explicit Task(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

EvalStats evaluate(Context& ctx, const Model& model, const Task& task, int64_t length, int64_t batch,
                   int64_t n_batches, uint64_t seed);

}  // namespace mambacpp::train
