// The training loop: batch i = f(seed, i) from the task and curriculum -> forward_train ->
// masked cross-entropy -> backward -> (data parallel: gradient all-reduce or ZeRO-1
// reduce-scatter) -> clip -> AdamW -> (eval, checkpoint, CSV row). Because a batch depends only
// on (seed, step), resuming from a checkpoint replays the same loss curve as an uninterrupted
// run, on any number of ranks.
//
//   Trainer trainer(config);                                       // or Trainer(config, ckpt)
//   trainer.run({.on_step = [](const StepStats& s) { ... }});
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "dist/comm.h"
#include "models/model.h"
#include "ops/device.h"
#include "train/data_parallel.h"
#include "train/optimizer.h"
#include "train/tasks.h"
#include "train/train_config.h"

namespace mamba::train {

struct StepStats {
  int64_t step = 0;  // steps done, this one included
  double lr = 0, loss = 0, accuracy = 0, grad_norm = 0;
  int64_t max_length = 0;  // curriculum maximum at this step
  int64_t tokens = 0;      // non-pad positions of the batch
  double seconds = 0;      // wall time of the step
};

struct EvalStats {
  int64_t length = 0;  // the evaluated (valid) length
  double loss = 0, accuracy = 0,
         scaled_accuracy = 0;  // accuracies in [0, 1]; scaled = (acc − chance)/(1 − chance)
  int64_t answers = 0;
};

// Accuracy of `model` on `n_batches` held-out batches of `task` at one length (the largest valid
// one <= length), batch i drawn from (seed, i) on a stream separate from training.
EvalStats evaluate(ops::Exec& exec, const models::Model& model, const Task& task, int64_t length,
                   int64_t batch, int64_t n_batches, uint64_t seed);

// Where a run computes; not part of its definition (trainer.json), so a checkpoint resumes on
// either device. matmul_dtype bf16 (CUDA only) is mixed precision: fp32 master weights and AdamW
// moments, GEMMs with bf16 operands and fp32 accumulation (see Trainer::make_compute_model).
struct TrainDevice {
  Device device = Device::cpu;
  DType matmul_dtype = DType::f32;
  ops::KernelPlan plan = {};  // kernel choices of the trainer's Exec (ops/exec.h)
  // Data parallel (docs/distributed.md): this process is rank comm->rank() of comm->size(); null
  // or size 1 is one process. Every rank draws the same global batch and takes its rows.
  dist::Communicator* comm = nullptr;       // not owned; outlives the Trainer
  bool zero1 = false;                       // shard the AdamW moments across the ranks (ZeRO-1)
  int64_t bucket_elems = int64_t{1} << 22;  // f32 elements per gradient all-reduce bucket (16 MiB)
  // CUDA, one process: each batch shape's step (zeroing, forward, loss, backward, clipping, AdamW,
  // the derived constants) is recorded once in a CUDA graph and replayed (trainer_graph.cpp); the
  // host then only draws the batch, embeds it and copies it in. Same bits as the eager step by
  // construction; off by default until it has run clean on a GPU (docs/plan.md).
  bool graph = false;
};

struct RunCallbacks {
  std::function<void(const StepStats&)> on_step;
  std::function<void(int64_t step, const EvalStats&)> on_eval;
  std::function<void(const std::string& dir)> on_checkpoint;
};

class Trainer {
public:
  // A fresh run: random weights from config.seed (Model::random, SPEC §4.6).
  explicit Trainer(const TrainConfig& config, const TrainDevice& where = {});
  // Continues from a checkpoint folder (resolve_checkpoint): weights, optimizer state and step.
  // `config` is normally the checkpoint's trainer.json config (load_checkpoint_config), possibly
  // with more steps (a cosine schedule then stretches to the new total); its model must match.
  Trainer(const TrainConfig& config, const std::string& checkpoint, const TrainDevice& where = {});
  ~Trainer();

  StepStats step();  // launch_step + finish_step
  // A step in two halves, for runs stepped together (PackedTrainer): launch queues the step's
  // device work without waiting for it where the step is a captured graph (elsewhere it runs the
  // whole step); finish waits for it and returns the numbers.
  void launch_step();
  StepStats finish_step();
  EvalStats evaluate_now() const;  // at the config's eval length
  // Writes a checkpoint of the current step under config.checkpoint_dir; returns its folder.
  std::string save_checkpoint() const;
  // Runs the remaining steps up to config.steps with evaluation, checkpoints and the CSV log.
  void run(const RunCallbacks& callbacks = {});
  // run() in parts, for callers that step themselves (PackedTrainer): opens the CSV log; after a
  // step, evaluation, the log row and checkpoints as run() does them.
  void begin_run();
  void after_step(const StepStats& s, const RunCallbacks& callbacks = {});

  int64_t steps_done() const { return step_; }
  const TrainConfig& config() const { return config_; }
  const Task& task() const { return *task_; }
  // The fp32 master weights (on the run's device).
  const models::Model& model() const { return *model_; }
  const TrainDevice& device() const { return where_; }
  int rank() const { return dp_ ? dp_->rank() : 0; }
  int world_size() const { return dp_ ? dp_->size() : 1; }

  // Steps that replayed a captured graph (tests, the CLI's summary).
  int64_t graph_replays() const { return graph_replays_; }

private:
  // One batch shape's captured step: its input buffers (rewritten before each replay), its
  // activations and its graph (trainer_graph.cpp).
  struct CapturedStep {
    Shape shape;                    // [batch, seq_len] of the ids
    Tensor ids, targets, embedded;  // graph inputs on the device
    Tensor counts;                  // {n_counted, 1 / n_counted} as doubles
    Tensor stats;                   // graph output: {loss, correct, squared grad norm} as doubles
    models::Activations acts;       // the graph's activations
    ops::DeviceGraph graph;
    int runs = 0;  // eager runs so far (the first warms the allocator)
    int64_t last_used = 0;
  };
  bool graph_eligible() const;
  StepStats eager_step(StepStats s, const Tensor& ids, const Tensor& targets,
                       const std::vector<int64_t>& lengths, int64_t global_count,
                       std::chrono::steady_clock::time_point start);
  // The step through the captured graph of the batch's shape (queued); then {loss, correct, norm²}.
  void launch_graph_step(const Tensor& ids, const Tensor& targets);
  std::array<double, 3> finish_graph_step();
  void device_part(CapturedStep& g);  // what the graph records
  CapturedStep& captured_for(const Shape& shape);

  void init();
  void place();  // moves the model to where_.device, then grads, optimizer, compute model
  void make_compute_model();
  void refresh_compute_model();
  void open_log();
  void log_row(const StepStats& s, const EvalStats* eval);

  TrainConfig config_;
  std::unique_ptr<Task> task_;
  TrainDevice where_;
  std::unique_ptr<ops::Exec> exec_;  // the execution context (its own stream on CUDA)
  std::unique_ptr<models::Model> model_, grads_;
  std::unique_ptr<models::Model> compute_;  // bf16 GEMM weights (mixed precision), else null
  models::Activations acts_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<DataParallel> dp_;  // null in a one-process run
  int64_t step_ = 0;
  std::FILE* log_ = nullptr;
  std::vector<std::unique_ptr<CapturedStep>> captured_;  // by batch shape, at most kMaxGraphs
  bool graph_off_ = false;                               // a capture failed: eager from then on
  CapturedStep* launched_ = nullptr;                     // the graph step launch_step queued
  struct Pending {
    bool active = false;
    std::chrono::steady_clock::time_point start;
    int64_t global_count = 0;
    StepStats stats;
    bool done = false;  // stats complete (an eager step)
  } pending_;
  int64_t graph_replays_ = 0;
};

// The training config saved in a checkpoint (its trainer.json).
TrainConfig load_checkpoint_config(const std::string& checkpoint);

}  // namespace mamba::train
