// Independent runs of one training setup in one process: a sweep over seeds × learning rates, as
// the state-tracking and induction-head protocols ask (16 runs a cell). Every run is a Trainer of
// its own — weights, AdamW moments, batches (from its seed), CSV log and checkpoints under its own
// folder — so a run's numbers do not depend on the others. They step together: each launches its
// step (on CUDA: its own stream and its captured step graph, so the runs' kernels overlap on the
// device) before any waits for its result. A tiny model (1 layer, d_model 64) leaves most of a GPU
// idle when trained alone; packed, the runs fill it.
//
//   PackedTrainer sweep(base, sweep_grid({1, 2, 3}, {1e-3, 3e-3}), where);
//   sweep.run({.on_step = ...});  // then runs.csv under base.checkpoint_dir
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace mamba::train {

struct RunSpec {
  uint64_t seed = 0;
  double lr = 1e-3;
};

// Every seed with every learning rate, seed-major.
std::vector<RunSpec> sweep_grid(const std::vector<uint64_t>& seeds, const std::vector<double>& lrs);
// A sweep file (JSON): {"seeds": [..], "lrs": [..]} (the grid) or [{"seed": s, "lr": x}, ...].
// Throws Error(parse / invalid_argument) naming the file and the field.
std::vector<RunSpec> load_sweep(const std::string& path);

// A run's folder name under the sweep's checkpoint folder: "seed<s>_lr<x>".
std::string run_name(const RunSpec& run);
// The base config with the run's seed and learning rate; its checkpoints (and log, when the base
// has one) in base.checkpoint_dir/<run_name>/.
TrainConfig run_config(const TrainConfig& base, const RunSpec& run);

struct PackedCallbacks {
  std::function<void(size_t run, const StepStats&)> on_step;
  std::function<void(size_t run, int64_t step, const EvalStats&)> on_eval;
  // After every run took a step: the wall time of that packed step (all runs' device work).
  std::function<void(int64_t packed_step, double seconds, int64_t tokens)> on_packed_step;
};

class PackedTrainer {
public:
  // A run whose folder has a checkpoint (ROOT/latest) continues from it; the others start fresh.
  PackedTrainer(const TrainConfig& base, const std::vector<RunSpec>& runs, const TrainDevice& where);

  // One step of every run that has steps left; returns them in run order (empty when all done).
  std::vector<StepStats> step();
  // Every run to base.steps with evaluation, logs and checkpoints as Trainer::run; at the end
  // base.checkpoint_dir/runs.csv (atomic) holds each run's final numbers.
  void run(const PackedCallbacks& callbacks = {});

  size_t size() const { return trainers_.size(); }
  Trainer& trainer(size_t i) { return *trainers_[i]; }
  const RunSpec& spec(size_t i) const { return runs_[i]; }
  // The last evaluation of each run (length 0 before one ran).
  const std::vector<EvalStats>& last_evals() const { return evals_; }
  const std::vector<StepStats>& last_steps() const { return last_; }
  // runs.csv's text: run,seed,lr,steps,loss,acc,eval_length,eval_acc,eval_scaled_acc.
  std::string results_csv() const;

private:
  TrainConfig base_;
  std::vector<RunSpec> runs_;
  std::vector<std::unique_ptr<Trainer>> trainers_;
  std::vector<EvalStats> evals_;
  std::vector<StepStats> last_;
  int64_t packed_steps_ = 0;
};

}  // namespace mamba::train
