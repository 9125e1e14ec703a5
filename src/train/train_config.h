// Training configuration: the model (a state-spaces/mamba config.json without vocab_size, which
// the task decides), the task and its curriculum, optimizer and schedule, evaluation,
// checkpoints and log. Read from JSON (unknown fields are errors); written into every checkpoint
// as trainer.json so a resumed run continues exactly.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "models/config.h"
#include "train/optimizer.h"
#include "train/tasks.h"

namespace mamba::train {

struct TrainConfig {
  // state-spaces/mamba config.json fields: d_model, n_layer, ssm_cfg {layer, d_state, headdim,
  // is_mimo, mimo_rank, rope_mode, ...}, d_intermediate, attn_layer_idx, ...
  nlohmann::json model = default_model();
  std::string task = "parity";
  TaskOptions task_options;
  Curriculum curriculum;
  int64_t batch = 32;
  // Rows of a batch sorted by length and run as this many groups, each padded only to its own
  // longest row; the gradients are summed, weighted by each group's answers, so a step is the
  // whole batch's step up to rounding, with less padding (a curriculum's lengths are uniform in
  // [min, max]: one group computes ~2x the real tokens, 4 groups ~1.25x). Eager steps only.
  int64_t length_buckets = 1;
  int64_t steps = 1000;
  LrSchedule schedule;  // lr, warm-up, kind, min_lr; total_steps = steps
  AdamWOptions adamw;
  double clip = 1.0;        // global gradient norm; <= 0: no clipping
  uint64_t seed = 0;        // model initialization and every batch (batch i = f(seed, i))
  int64_t eval_every = 0;   // steps; 0 = only at the end
  int64_t eval_length = 0;  // 0 = curriculum.end_max
  int64_t eval_batches = 4;
  int64_t eval_batch = 0;        // 0 = batch
  std::string checkpoint_dir;    // empty = no checkpoints
  int64_t checkpoint_every = 0;  // steps; 0 = only at the end (when checkpoint_dir is set)
  int64_t keep_checkpoints = 2;  // newest step_* folders kept
  std::string log_csv;           // empty = no CSV log

  // 1 layer, d_model 32, Mamba-3 SISO, d_state 64 (the parity setup of TASKS.md §1).
  static nlohmann::json default_model();
};

// Throws Error(invalid_argument) naming `source` and the field for unknown fields, wrong types
// and out-of-range values.
TrainConfig parse_train_config(const nlohmann::json& j, const std::string& source);
TrainConfig load_train_config(const std::string& path);
// A JSON file of the training layer (a config, trainer.json, a sweep): read, depth-checked, parsed;
// Error(parse) "<path>: malformed JSON: ..." otherwise.
nlohmann::json read_json_file(const std::string& path);
nlohmann::json to_json(const TrainConfig& config);
// Checks ranges (batch > 0, lr > 0, ...); parse_train_config calls it, and so does the trainer
// after command-line flags changed a config.
void validate(const TrainConfig& config, const std::string& source);

// The model config of a run: config.model with vocab_size set to the task's vocabulary (a
// vocab_size given in the config must be at least that).
models::ModelConfig model_config_for(const TrainConfig& config, const Task& task);

}  // namespace mamba::train
