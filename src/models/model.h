// The language model (SPEC.md §4): embedding -> blocks (add -> norm -> mixer [-> add -> norm2 ->
// gated MLP]) -> add -> norm_f -> lm_head, with an explicit `State` for decoding.
//
//   Model model = Model::load("dir");           // immutable, shareable across threads
//   State state = model.new_state(batch);
//   Tensor logits = model.forward(ids, state);  // prefill: [batch, seq_len, vocab_padded]
//   Tensor next = model.step(last_ids, state);  // decode:  [batch, vocab_padded]
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/gguf.h"
#include "models/config.h"
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

// What GatedMlp::forward_train keeps for backward.
struct MlpSaved {
  Tensor x;  // [batch, seq_len, d_model]   input (normed stream)
  Tensor h;  // [batch, seq_len, 2·hidden]  fc1 output [y | gate]
  Tensor a;  // [batch, seq_len, hidden]    y·silu(gate), fc2 input
};

// Gated MLP (SPEC §4.2): fc1 -> [y | gate] -> fc2(y·silu(gate)).
struct GatedMlp {
  Tensor fc1_weight;  // [2·hidden, d_model]
  Tensor fc2_weight;  // [d_model, hidden]
  Tensor forward(ops::Exec& exec, const Tensor& x) const;
  Tensor forward_train(ops::Exec& exec, const Tensor& x, MlpSaved& saved) const;
  // dout -> dx; accumulates into grads.fc1_weight, grads.fc2_weight.
  Tensor backward(ops::Exec& exec, const Tensor& dout, const MlpSaved& saved, GatedMlp& grads) const;
};

// One layer: residual += s1·(mixer(x) [+ mixer_par(x)]) with x = norm(residual), then, with an MLP
// or FFN, residual += s2·ffn(norm2(residual)). The families (models/families/) fill the optional
// parts; the state-spaces / HF mamba layouts use norm, mixer and mlp only.
struct Block {
  Tensor norm_weight, norm_bias;  // [d_model] (bias only with LayerNorm)
  std::unique_ptr<Mixer> mixer;
  Tensor norm2_weight, norm2_bias;  // [d_model], only with an MLP / FFN
  std::unique_ptr<GatedMlp> mlp;    // null when d_intermediate == 0
  // ---- Families. ----
  // A second mixer on the same normed input, its output added to the mixer's (Falcon-H1's
  // attention beside Mamba-2). Its state fields must not overlap the mixer's: both share one LayerState.
  std::unique_ptr<Mixer> mixer_par;
  std::unique_ptr<Mixer> ffn;  // a stateless second sublayer (MLP / MoE) after norm2
  bool has_norm = true;        // false: the mixer reads the raw stream (it holds its own norms)
  float mixer_scale = 1.0f, ffn_scale = 1.0f;  // residual multipliers (Granite's residual_multiplier)
  // Checkpoint names, relative to the layer: the norms' modules and what replaces a mixer's
  // "mixer." prefix (e.g. "mamba.").
  std::string norm_name = "norm", norm2_name = "norm2", mixer_prefix;
};

// What Model::forward_train keeps for backward, per block: the residual stream entering each
// norm and the sublayers' own activations. Reused across training steps (refilled each time).
struct BlockActivations {
  Tensor residual;  // [batch, seq_len, d_model]  input of norm
  std::unique_ptr<MixerSaved> mixer, mixer_par, ffn;
  Tensor residual2;  // [batch, seq_len, d_model]  input of norm2 (MLP blocks)
  MlpSaved mlp;
};
struct Activations {
  Tensor ids;  // [batch, seq_len]
  Tensor emb;  // [batch, seq_len, d_model]  scaled embeddings (mixers that read them: Zamba2)
  std::vector<BlockActivations> blocks;
  Tensor final_residual, final_normed;  // [batch, seq_len, d_model]  input / output of norm_f
};

// Targets of the next-token loss: targets[:, t] = ids[:, t + 1], and -1 (not counted) at the
// last position — the fixtures' loss.json definition. ids: [batch, seq_len] -> i64 [batch, seq_len].
Tensor next_token_targets(const Tensor& ids);

// Wall time per sublayer kind (Mixer::label(): "Mamba2", "MoE", "MLP", ...) of Model::forward and
// Model::step, for `bench`'s share-of-time columns. Timing synchronizes the device around every
// sublayer, so a timed run is slower than the benchmark itself.
struct SublayerTimes {
  std::map<std::string, double> seconds;
  double total() const;
};

// How a model's file is read (Model::load, Model::load_gguf).
struct LoadOptions {
  // A GGUF's weights used as stored: from the file's mapping (pages shared with every process
  // mapping the file, nothing read before first use; `--mmap`) rather than read into one buffer of
  // 2 MiB pages (the default: decode streams every weight once a token, ~20% faster than through
  // 4 KiB pages here; docs/quantization.md). Either way the resident set holds them once.
  bool gguf_mapped = false;
};

class Model {
public:
  // Loads config.json + model.safetensors (or a sharded index) from `dir`; all weights are
  // validated by name, shape and dtype and converted to f32.
  static Model load(const std::string& dir, const LoadOptions& options = {});
  // A `.gguf` path goes to load_gguf. llama.cpp's `mamba` / `mamba2` GGUF (src/models/gguf_model.cpp,
  // docs/quantization.md): the config from its metadata; linear-layer weights in bf16, q8_0,
  // q4_0 or q4_k stay in the file's mapping and run through ops/quant (CPU only); everything else
  // is converted to f32.
  static Model load_gguf(const std::string& path, const LoadOptions& options = {});
  // Writes this model as a llama.cpp GGUF (its names and metadata for `mamba` / `mamba2`), the
  // linear layers and the embedding in `dtype` (f32, bf16, q8_0, q4_0, q4_k; a row that is not a
  // whole number of blocks falls back to q4_0, then f32), atomically. Error(unsupported) for a
  // model llama.cpp's architectures cannot express (families, attention, MLP, LayerNorm, ...).
  // `metadata` is added as given (e.g. the tokenizer.ggml.* of runtime/gguf_tokenizer.h; without a
  // tokenizer.ggml.model the file says "none").
  void save_gguf(const std::string& path, DType dtype,
                 const std::vector<std::pair<std::string, io::GgufValue>>& metadata = {}) const;
  // Random weights with the reference's from-scratch initialization scheme (bench, training).
  static Model random(const ModelConfig& config, uint64_t seed);
  // Writes config.json (state-spaces/mamba format) and model.safetensors into `dir`
  // (created if missing), each atomically. A tied head is stored under both names, as the
  // reference's state dict holds both.
  void save(const std::string& dir) const;

  const ModelConfig& config() const { return config_; }
  // Moves every parameter and derived constant to `device` (Device::cuda needs a CUDA build and a
  // GPU); states, activations and logits then live there too. Explicit and whole-model.
  void to(Device device);
  Device device() const { return device_; }
  // Storage dtype of the linear layers' weights (in_proj, x_proj, dt_proj, out_proj, MLP, head).
  // bf16 or f16 (CUDA only, after to(Device::cuda)) rounds both GEMM operands to that type with fp32
  // accumulation; embedding, norms, conv and all state stay fp32 (bf16 also runs the bf16
  // tensor-core scans where they have a kernel; f16 keeps the fp32 scans). Lossy: convert once.
  void set_matmul_dtype(DType dtype);
  DType matmul_dtype() const { return matmul_dtype_; }
  State new_state(int64_t batch) const;  // on the model's device

  // ids: [batch, seq_len] i64 or i32. Continues from `state` (fresh = new sequences) and
  // advances it. Returns logits [batch, seq_len, vocab_padded] (only the last `num_last` positions
  // when num_last > 0).
  Tensor forward(ops::Exec& exec, const Tensor& ids, State& state, int64_t num_last = 0) const;
  // One token per sequence: ids [batch]. Returns logits [batch, vocab_padded].
  Tensor step(ops::Exec& exec, const Tensor& ids, State& state) const;
  // Model::step in two parts (runtime::StepGraph embeds outside its graph and captures the rest):
  // ids [batch] -> the scaled token embeddings [batch, d_model]; then the blocks and the head on
  // them, `residual` updated in place. The caller opens an ExecScope (step does).
  Tensor embed(ops::Exec& exec, const Tensor& ids) const;
  Tensor step_embedded(ops::Exec& exec, Tensor residual, State& state) const;

  // ---- Training (whole sequences from a fresh state). ----
  // Zero gradients shaped like the parameters (llm.c's grads beside params): its visit_params
  // names each gradient as its parameter; a tied head shares the embedding's gradient.
  Model new_grads() const;
  // Forward keeping activations: ids [batch, seq_len] -> logits [batch, seq_len, vocab_padded].
  Tensor forward_train(ops::Exec& exec, const Tensor& ids, Activations& acts) const;
  // forward_train in two parts, as step / step_embedded (the trainer's captured step embeds outside
  // its graph): ids on the model's device (kept for backward) and embed(exec, ids).
  Tensor forward_train_embedded(ops::Exec& exec, const Tensor& ids, const Tensor& embedded,
                                Activations& acts) const;
  // Backward from dlogits [batch, seq_len, vocab_padded]: accumulates d loss / d param into grads.
  void backward(ops::Exec& exec, const Tensor& dlogits, const Activations& acts, Model& grads) const;
  // Mean cross-entropy of the logits against targets (negative = not counted) and its
  // gradients accumulated into grads; returns the loss.
  double loss_and_grads(ops::Exec& exec, const Tensor& ids, const Tensor& targets, Model& grads,
                        Activations& acts) const;

  // Every parameter with its full checkpoint name (ForEachTensor: loading, saving, gradients).
  void visit_params(const ParamVisitor& fn);
  // Re-derives what is computed from parameters (A = −exp(A_log), the tied head, ...) after
  // they were written in place through visit_params (an optimizer step).
  void params_updated(ops::Exec& exec) { prepare(exec); }
  int64_t n_params() const;
  const std::vector<Block>& blocks() const { return blocks_; }
  // The config of a config.json object (either checkpoint layout or a family), validated.
  static ModelConfig config_from_json(const nlohmann::json& j, const std::string& source);
  // Times every sublayer of forward / step into `times` (null: off). Not for concurrent use.
  void set_sublayer_timing(SublayerTimes* times) { timing_ = times; }

private:
  Model() = default;
  void build();                   // allocates the block structure from config_
  void prepare(ops::Exec& exec);  // derived constants after weights are filled
  bool reads_embeddings() const;  // does any mixer read the token embeddings (Zamba2)?
  Tensor step_family(ops::Exec& exec, Tensor residual, State& state) const;  // step_embedded of a family
  Tensor norm(ops::Exec& exec, const Tensor& x, const Tensor& w, const Tensor& b) const;
  // Backward of norm: dy -> dx, accumulating dw (and db for LayerNorm).
  Tensor norm_bwd(ops::Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dw,
                  Tensor& db) const;
  Tensor head(ops::Exec& exec, const Tensor& residual) const;

  // Runs f() and files its wall time under `label` when timing is on.
  template <typename F>
  Tensor timed(const std::string& label, F&& f) const;

  ModelConfig config_;
  SublayerTimes* timing_ = nullptr;
  Device device_ = Device::cpu;
  DType matmul_dtype_ = DType::f32;
  Tensor embedding;  // [vocab_padded, d_model]
  std::vector<Block> blocks_;
  Tensor norm_f_weight, norm_f_bias;
  Tensor lm_head_weight;  // [vocab_padded, d_model]; shares the embedding's buffer when tied
};

}  // namespace mamba::models
