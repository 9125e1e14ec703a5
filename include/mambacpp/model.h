// mambacpp public API: a loaded model (Mamba-1/2/3, hybrids, the HF families; a checkpoint folder
// of config.json + *.safetensors, or a llama.cpp .gguf), its recurrent state, whole-sequence and
// one-token passes, gradients, and the GGUF writer behind `mambacpp quantize`.
//
//   mambacpp::Model model = mambacpp::Model::load("path/to/checkpoint");  // or a .gguf
//   model.to(mambacpp::Device::cuda);                                    // optional
//   mambacpp::Context ctx(model.device());                               // one per thread
//   mambacpp::State state = model.new_state(/*batch=*/1);
//   mambacpp::Tensor logits = model.forward(ctx, ids, state);            // [batch, seq_len, vocab]
//   mambacpp::Tensor next = model.step(ctx, last_ids, state);            // [batch, vocab]
//
// A `const Model&` may be shared by threads (common.h); a State belongs to one thread.
#pragma once
#include <mambacpp/common.h>
#include <mambacpp/tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mambacpp {

struct LoadOptions {
  // A GGUF's weights used from the file's mapping (shared pages, nothing read before first use)
  // instead of read into 2 MiB pages.
  bool gguf_mapped = false;
};

// The recurrent state of `batch` sequences (SSM states, convolution windows, attention KV caches).
class State {
public:
  State();
  ~State();
  State(State&& other) noexcept;
  State& operator=(State&& other) noexcept;

  int64_t batch() const;
  int64_t position() const;  // tokens consumed
  int64_t bytes() const;

  struct Impl;
  Impl& impl() { return *impl_; }
  explicit State(std::unique_ptr<Impl> impl);

private:
  std::unique_ptr<Impl> impl_;
};

class Model {
public:
  // A checkpoint folder (config.json + *.safetensors, or a state-spaces/mamba pytorch_model.bin)
  // or a .gguf file.
  static Model load(const std::string& path, const LoadOptions& options = {});
  ~Model();
  Model(Model&& other) noexcept;
  Model& operator=(Model&& other) noexcept;

  void to(Device device);  // moves the weights
  Device device() const;
  void set_matmul_dtype(DType d);  // GEMM weights in bf16 / f16 (CUDA) or f32

  int64_t n_params() const;
  int64_t d_model() const;
  int64_t n_layer() const;
  int64_t vocab_size() const;      // the tokenizer's ids
  int64_t vocab_padded() const;    // logits columns (padded as the checkpoint stores the head)
  std::string layer_kind() const;  // the SSM layer of a state-spaces config: "Mamba1", "Mamba2", "Mamba3"

  State new_state(int64_t batch) const;  // on the model's device
  // ids: int64 [batch, seq_len] -> f32 logits [batch, seq_len, vocab_padded] (num_last > 0: only
  // the last num_last positions); `state` advances by seq_len.
  Tensor forward(Context& ctx, const Tensor& ids, State& state, int64_t num_last = 0) const;
  // ids: int64 [batch] -> logits [batch, vocab_padded]; one token of each sequence.
  Tensor step(Context& ctx, const Tensor& ids, State& state) const;

  // The mean next-token cross-entropy of ids [batch, seq_len] and d loss / d parameter, named as
  // in the checkpoint (a tied head's gradient under the embedding's name).
  struct Gradients {
    double loss = 0;
    std::vector<std::pair<std::string, Tensor>> tensors;
  };
  Gradients loss_and_grads(Context& ctx, const Tensor& ids) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }
  Impl& impl() { return *impl_; }
  explicit Model(std::unique_ptr<Impl> impl);

private:
  std::unique_ptr<Impl> impl_;
};

// `mambacpp info`'s report of a checkpoint folder or .gguf: format, dimensions, layer kinds, the
// stored weight dtypes, the tokenizer, the state size; handed to `write` piece by piece as made.
void model_report(const std::string& path, const std::function<void(const std::string& text)>& write);

// Writes `model` as a llama.cpp GGUF with its linear layers and embedding in `weights` (bf16,
// q8_0, q4_0, q4_k; f32 keeps them), atomically. The tokenizer.json of `source_dir` (a folder)
// goes in as tokenizer.ggml.*; one that cannot be converted is reported through `on_warning` and
// left out. Returns whether a tokenizer was written.
bool quantize(const Model& model, const std::string& source_dir, const std::string& output, DType weights,
              const std::function<void(const std::string& warning)>& on_warning = {});

// The state-spaces `ssm_cfg.layer` names of the registered architectures ("Mamba1", ...).
std::vector<std::string> architecture_names();

}  // namespace mambacpp
