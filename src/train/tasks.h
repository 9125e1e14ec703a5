// Training data generated on the fly from a seed (the synthetic tasks of TASKS.md) and byte-level
// text windows. A batch is ids plus per-position targets; only answer positions (target >= 0,
// mask 1) count in the loss and the accuracy. Every example keeps the next-token convention:
// the answer is predicted at the position before it (e.g. parity's last bit).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "train/rng.h"

namespace mamba::train {

// One sequence: ids and the target at each position (-1 = not an answer position).
struct Example {
  std::vector<int64_t> ids;
  std::vector<int64_t> targets;
};

struct Batch {
  Tensor ids;      // [batch, seq_len] i64, padded at the end with the task's pad id
  Tensor targets;  // [batch, seq_len] i64, the answer at answer positions, -1 elsewhere
  Tensor mask;     // [batch, seq_len] u8, 1 at answer positions
  int64_t n_answers = 0;
  int64_t n_tokens = 0;          // non-pad positions
  std::vector<int64_t> lengths;  // [batch]: each row's non-pad length
};

// Task-specific sizes; each field applies to the tasks named beside it.
struct TaskOptions {
  int64_t n_data = 16;                  // selective_copy: data tokens to copy
  int64_t vocab = 8192;                 // mqar: vocabulary (keys [1, V/2), values [V/2, V))
  int64_t n_pairs = 8;                  // mqar: key-value pairs
  double power_a = 0.01;                // mqar: query gaps ~ i^(a-1) (Zoology's default)
  int64_t group_order = 60;             // group: the cyclic group Z_n of the word problem
  std::vector<std::string> text_files;  // text: UTF-8 or any bytes, read whole
};

class Task {
public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t pad_id() const = 0;
  // Accuracy of guessing, for scaled accuracy = (acc − chance) / (1 − chance).
  virtual double chance() const = 0;
  // Shortest sequence the task can make, and whether a length is possible (arithmetic without
  // brackets has odd lengths only).
  virtual int64_t min_length() const = 0;
  virtual bool valid_length(int64_t length) const { return length >= min_length(); }
  // A length when none is asked for (selective copying: 4096 + 32).
  virtual int64_t default_length() const { return 256; }
  // One example of exactly `length` tokens (a valid length).
  virtual Example make(int64_t length, Rng& rng) const = 0;
};

// Names: parity, arithmetic, arithmetic_brackets, selective_copy, induction_heads, mqar, group,
// text. Throws Error(invalid_argument) for an unknown name, Error(io) for unreadable text files.
std::unique_ptr<Task> make_task(const std::string& name, const TaskOptions& options = {});
std::vector<std::string> task_names();

// `batch` examples with lengths drawn uniformly among the valid lengths in [min_length,
// max_length] (min clamped to the task's minimum), padded to the longest. Throws
// Error(invalid_argument) when the range holds no valid length.
Batch sample_batch(const Task& task, int64_t batch, int64_t min_length, int64_t max_length, Rng& rng);

// The largest valid length <= length (evaluation at "length 256" for odd-only tasks uses 255).
int64_t nearest_valid_length(const Task& task, int64_t length);

// Length curriculum (TASKS.md §1): lengths in [min_length, max(step)], where the maximum rises
// from start_max to end_max in n_stages equal steps, each lasting steps_per_stage steps, and
// then stays at end_max. n_stages = 1 is a fixed range [min_length, end_max].
struct Curriculum {
  int64_t min_length = 3;
  int64_t start_max = 40;
  int64_t end_max = 160;
  int64_t n_stages = 1;
  int64_t steps_per_stage = 10000;

  int64_t max_length(int64_t step) const;
  void validate() const;  // throws Error(invalid_argument) naming the field
};

}  // namespace mamba::train
