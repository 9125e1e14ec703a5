// The language model (SPEC.md §4): embedding -> blocks (add -> norm -> mixer [-> add -> norm2 ->
// gated MLP]) -> add -> norm_f -> lm_head, with an explicit `State` for decoding.
//
//   Model model = Model::load("dir");           // immutable, shareable across threads
//   State state = model.new_state(batch);
//   Tensor logits = model.forward(ids, state);  // prefill: [batch, seq_len, vocab_padded]
//   Tensor next = model.step(last_ids, state);  // decode:  [batch, vocab_padded]
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"
#include "models/mixer.h"

namespace mamba::models {

// Recurrent state of a batch of sequences: one LayerState per layer and the position (tokens
// consumed so far). Copies are explicit.
struct State {
  int64_t batch = 0;
  int64_t position = 0;
  std::vector<LayerState> layers;

  State copy() const;
  int64_t bytes() const;  // total bytes held
};

// Gated MLP (SPEC §4.2): fc1 -> [y | gate] -> fc2(y·silu(gate)).
struct GatedMlp {
  Tensor fc1_weight;  // [2·hidden, d_model]
  Tensor fc2_weight;  // [d_model, hidden]
  Tensor forward(const Tensor& x) const;
};

struct Block {
  Tensor norm_weight, norm_bias;    // [d_model] (bias only with LayerNorm)
  std::unique_ptr<Mixer> mixer;
  Tensor norm2_weight, norm2_bias;  // [d_model], only with an MLP
  std::unique_ptr<GatedMlp> mlp;    // null when d_intermediate == 0
};

class Model {
public:
  // Loads config.json + model.safetensors (or a sharded index) from `dir`; all weights are
  // validated by name, shape and dtype and converted to f32.
  static Model load(const std::string& dir);
  // Random weights with the reference's from-scratch initialization scheme (bench, training).
  static Model random(const io::ModelConfig& config, uint64_t seed);
  // Writes config.json (state-spaces/mamba format) and model.safetensors into `dir`
  // (created if missing), each atomically. A tied head is stored under both names, as the
  // reference's state dict holds both.
  void save(const std::string& dir) const;

  const io::ModelConfig& config() const { return config_; }
  State new_state(int64_t batch) const;

  // ids: [batch, seq_len] i64 or i32. Continues from `state` (fresh = new sequences) and
  // advances it. Returns logits [batch, seq_len, vocab_padded] (only the last `num_last` positions
  // when num_last > 0).
  Tensor forward(const Tensor& ids, State& state, int64_t num_last = 0) const;
  // One token per sequence: ids [batch]. Returns logits [batch, vocab_padded].
  Tensor step(const Tensor& ids, State& state) const;

  // Every parameter with its full checkpoint name (ForEachTensor: loading, saving, gradients).
  void visit_params(const ParamVisitor& fn);
  int64_t n_params() const;
  const std::vector<Block>& blocks() const { return blocks_; }

private:
  Model() = default;
  void build();     // allocates the block structure from config_
  void prepare();   // derived constants after weights are filled
  Tensor embed(const Tensor& ids) const;
  Tensor norm(const Tensor& x, const Tensor& w, const Tensor& b) const;
  Tensor head(const Tensor& residual) const;

  io::ModelConfig config_;
  Tensor embedding;    // [vocab_padded, d_model]
  std::vector<Block> blocks_;
  Tensor norm_f_weight, norm_f_bias;
  Tensor lm_head_weight;  // [vocab_padded, d_model]; shares the embedding's buffer when tied
};

}  // namespace mamba::models
