// Flags shared by `generate` and `chat` (see generation_flags.h).
#include "generation_flags.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <random>

#include "commands.h"
#include "flags.h"

namespace mambacpp::cli {

void add_generation_flags(CLI::App& app, GenerationFlags& f, int64_t default_n_predict) {
  f.n_predict = default_n_predict;
  app.add_option("-m,--model", f.model,
                 "model directory (config.json, *.safetensors, tokenizer.json) or a .gguf")
      ->required();
  app.add_option(
      "--tokenizer", f.tokenizer,
      "tokenizer.json to use, or 'byte': one token per byte (default: MODEL/tokenizer.json if present, "
      "else 'byte' for a model trained with --task text)");
  app.add_option("-n,--n-predict", f.n_predict, "tokens to generate")
      ->capture_default_str()
      ->check(int_range(0));
  app.add_option("--temp", f.temp, "temperature; <= 0: greedy")->capture_default_str()->check(any_real());
  app.add_option("--top-k", f.top_k, "keep the k most likely tokens; <= 0: off")
      ->capture_default_str()
      ->check(int_range(std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
  app.add_option("--top-p", f.top_p, "nucleus sampling threshold; 1: off")
      ->capture_default_str()
      ->check(real_range(0, 1));
  app.add_option("--min-p", f.min_p, "keep tokens with p >= min_p * p_max; 0: off")
      ->capture_default_str()
      ->check(real_range(0, 1));
  app.add_option("--repeat-penalty", f.repeat_penalty, "repetition penalty; 1: off")
      ->capture_default_str()
      ->check(real_range(0, std::numeric_limits<double>::infinity(), true));
  app.add_option("--repeat-last-n", f.repeat_last_n, "penalty window in tokens; -1: everything")
      ->capture_default_str()
      ->check(int_range(-1, std::numeric_limits<int>::max()));
  app.add_option("--presence-penalty", f.presence_penalty, "subtracted once per repeated token")
      ->capture_default_str()
      ->check(any_real());
  app.add_option("--frequency-penalty", f.frequency_penalty, "subtracted per occurrence")
      ->capture_default_str()
      ->check(any_real());
  app.add_option("-s,--seed", f.seed, "sampler seed; -1: random")
      ->capture_default_str()
      ->check(int_range(-1));
  app.add_option("--stop", f.stop, "stop when this text is generated (repeatable; never printed)");
  app.add_flag("--ignore-eos", f.ignore_eos, "keep generating past end-of-sequence tokens");
  app.add_option("--prefill-chunk", f.prefill_chunk, "tokens per whole-sequence prefill pass")
      ->capture_default_str()
      ->check(int_range(1));
  add_threads_option(app, f.threads);
  add_mmap_flag(app, f.mmap);
  add_device_option(app, f.device, "cpu or cuda (default cpu; cuda decodes through a CUDA graph)");
  add_kernel_option(app, f.kernels);
  add_dtype_option(app, f.dtype);
}

std::shared_ptr<const Tokenizer> open_tokenizer(const std::string& model_dir, const std::string& flag) {
  std::shared_ptr<const Tokenizer> tokenizer = load_tokenizer(model_dir, flag);
  // Checkpoints of --task text written before config.json named the tokenizer.
  if (!tokenizer && flag.empty() && !model_dir.empty() && file_exists(path_join(model_dir, "trainer.json")) &&
      train::checkpoint_task(model_dir) == "text")
    return Tokenizer::byte_level();
  return tokenizer;
}

std::string resolve_model(const std::string& model) {
  return model.empty() ? model : train::resolve_model_dir(model);
}

Model load_model(const GenerationFlags& f) {
  check_dtype_device(f.dtype, f.device);
  const Device device = parse_device(f.device);
  Model model = Model::load(f.model, {.gguf_mapped = f.mmap});
  model.to(device);
  model.set_matmul_dtype(matmul_dtype(f.dtype));
  return model;
}

SamplingParams sampling_params(GenerationFlags& f) {
  if (f.seed < 0) f.seed = static_cast<int64_t>(std::random_device{}() & 0x7fffffff);
  SamplingParams p;
  p.temperature = f.temp;
  p.top_k = f.top_k;
  p.top_p = f.top_p;
  p.min_p = f.min_p;
  p.repetition_penalty = f.repeat_penalty;
  p.presence_penalty = f.presence_penalty;
  p.frequency_penalty = f.frequency_penalty;
  p.penalty_last_n = f.repeat_last_n;
  p.seed = static_cast<uint64_t>(f.seed);
  return p;
}

SessionOptions session_options(const GenerationFlags& f) {
  if (f.prefill_chunk < 1)
    throw_error(ErrorCode::invalid_argument, "--prefill-chunk: expected at least 1, found ", f.prefill_chunk);
  // The penalty window is all the sampler reads of the history: keep no more (constant memory).
  return {.prefill_chunk = f.prefill_chunk,
          .history_limit = f.repeat_last_n < 0 ? -1 : f.repeat_last_n,
          .plan = kernel_plan(f.kernels)};
}

StopCriteria stop_criteria(const GenerationFlags& f, const Tokenizer* tokenizer,
                           const std::vector<std::string>& extra) {
  StopCriteria stop;
  if (!f.ignore_eos) stop.eos_ids = eos_token_ids(f.model, tokenizer);
  stop.stop_strings = extra;
  stop.stop_strings.insert(stop.stop_strings.end(), f.stop.begin(), f.stop.end());
  if (!stop.stop_strings.empty() && !tokenizer)
    throw_error(ErrorCode::invalid_argument, "--stop needs a tokenizer: ", f.model,
                "/tokenizer.json not found (pass --tokenizer FILE)");
  return stop;
}

std::vector<int32_t> parse_ids(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ',' || std::isspace(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && text[end] != ',' && !std::isspace(static_cast<unsigned char>(text[end])))
      ++end;
    const std::string item = text.substr(i, end - i);
    char* stop = nullptr;
    errno = 0;
    const long long v = std::strtoll(item.c_str(), &stop, 10);
    if (*stop != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
      throw_error(ErrorCode::invalid_argument, flag, ": expected token ids like 1,2,3, found '", item, "'");
    ids.push_back(static_cast<int32_t>(v));
    i = end;
  }
  return ids;
}

double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace mambacpp::cli
