// `mambacpp bench --generate` (bench_generate.cpp): batched generation throughput on the bench's
// random-weight model shapes; cmd_bench.cpp owns the flags and the configs.
#pragma once
#include <mambacpp/mambacpp.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mambacpp::cli {

struct GenerateBenchArgs {
  std::vector<std::string> models;
  std::vector<int> threads;
  std::vector<int64_t> batches;
  int64_t decode_tokens = 0;
  std::string device = "cpu";  // cpu or cuda (the model is moved there; decode replays a graph)
  std::string dtype = "f32";   // linear-layer weights: f32, or bf16 / f16 on cuda
  std::function<Model(const std::string&)> model;  // the bench's random-weight model of a name
  KernelPlan plan = {};                            // every session's (--kernel)
};

int bench_generate(const GenerateBenchArgs& a);

}  // namespace mambacpp::cli
