// mambacpp public API, the benchmark entry of `mambacpp bench`: random-weight models of realistic
// shape (the architectures' bench shapes, and the HF families' layer patterns at reduced width),
// timed prefill and decode.
#pragma once
#include <mambacpp/common.h>
#include <mambacpp/model.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mambacpp::bench {

struct Options {
  int64_t seq_len = 2048, decode_tokens = 32, n_layer = 24, d_model = 768, d_intermediate = 0;
  int64_t repeat = 3;           // timed runs of each measurement
  int64_t batch = 1;            // sequences of each pass
  std::string device = "cpu";   // cpu or cuda
  std::string dtype = "f32";    // linear-layer weights (bf16, f16: CUDA only)
  std::string weights = "f32";  // CPU: run from a GGUF of these weights (bf16, q8_0, q4_0, q4_k)
  bool eager = false;           // CUDA decode without the captured graph
  bool profile = false;         // device time per op, to stderr
  KernelPlan plan = {};
};

// Throws Error naming the known models when `name` is not one.
void check_model(const std::string& name, const Options& options);
// A random-weight model of `name` (seed 1234, as every bench row), on the host.
Model random_model(const std::string& name, const Options& options);
// Times `name` at each thread count. The result, one line each: "params decode_weight_bytes",
// then "threads prefill_tok_s x repeat decode_tok_s x repeat" per thread count, then for a family
// "#share of time per sublayer kind".
std::string run_model(const std::string& name, const std::vector<int>& threads, const Options& options);

}  // namespace mambacpp::bench
