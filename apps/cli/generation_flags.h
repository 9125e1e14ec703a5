// Flags shared by `generate` and `chat` (llama.cpp names and defaults) and what they build:
// sampler parameters, session options, stop criteria; token-id lists; peak memory.
#pragma once
#include <mambacpp/mambacpp.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mambacpp::cli {

struct GenerationFlags {
  std::string model, tokenizer;
  int64_t n_predict = 128, prefill_chunk = 256,
          seed = -1;  // seed -1: a random one (printed); chunk: Session's
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f;
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  int top_k = 40, repeat_last_n = 64, threads = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool mmap = false;  // --mmap: a GGUF's weights from the file's mapping (LoadOptions::gguf_mapped)
  std::string device = "cpu", dtype = "f32";  // --device, --dtype (linear-layer weights; cuda only)
  std::vector<std::string> kernels;           // --kernel NAME=VALUE
};

void add_generation_flags(CLI::App& app, GenerationFlags& f, int64_t default_n_predict);
// Resolves seed -1 to a random seed, once: f.seed is set to the one used.
SamplingParams sampling_params(GenerationFlags& f);
SessionOptions session_options(const GenerationFlags& f);
// --tokenizer: "byte" (ids 0..255 are the bytes, as `train --task text` models read them), a
// tokenizer.json, or (not given) MODEL/tokenizer.json, else the byte tokenizer when MODEL is a
// checkpoint trained on --task text; null when none applies.
std::shared_ptr<const Tokenizer> open_tokenizer(const std::string& model_dir, const std::string& flag);
// --model as given, or the latest step of a training checkpoint ROOT.
std::string resolve_model(const std::string& model);
// Loads --model onto --device with --dtype linear-layer weights.
Model load_model(const GenerationFlags& f);
// eos ids of the model folder (unless --ignore-eos); stop strings: `extra` first, then --stop.
StopCriteria stop_criteria(const GenerationFlags& f, const Tokenizer* tokenizer,
                           const std::vector<std::string>& extra = {});

// "1,2,3" or "1 2 3" -> ids; `flag` names the option in errors.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& flag);
// Peak resident memory of this process so far (getrusage), MiB.
double peak_rss_mib();

}  // namespace mambacpp::cli
