// mambacpp public API: load a Mamba-family checkpoint, run it over whole sequences or one token
// at a time from an explicit state.
//
//   #include <mambacpp/mambacpp.h>
//   auto model = mambacpp::Model::load("path/to/checkpoint");       // config.json + *.safetensors, or a
//   .gguf model.to(mambacpp::Device::cuda);                                // optional: run on the GPU
//   mambacpp::State state = model.new_state(/*batch=*/1);
//   mambacpp::Tensor ids = mambacpp::read_npy("ids.npy");            // int64 [batch, seq_len]
//   mambacpp::Tensor logits = model.forward(ids, state);             // [batch, seq_len, vocab]
//   mambacpp::Tensor next = model.step(last_ids, state);             // [batch, vocab]
//
// Text generation (runtime/session.h): a Session holds one sequence's state over a shared model.
//   auto tokenizer = mambacpp::load_tokenizer("path/to/checkpoint");  // DIR/tokenizer.json
//   mambacpp::Session session(model);
//   mambacpp::Sampler sampler({.temperature = 0.8f, .seed = 1}, model.config().vocab_size);
//   session.generate(tokenizer->encode("Hello"), {.max_tokens = 32}, sampler, tokenizer.get(),
//                    [](int32_t, std::string_view text) { std::cout << text; return true; });
//   session.save_state("hello.mstate");                               // load_state() continues it
//
// Training from scratch (train/trainer.h; `mambacpp train`):
//   auto config = mambacpp::train::load_train_config("parity.json");  // or fill a TrainConfig
//   mambacpp::train::Trainer trainer(config);                         // (config, "ckpt/") resumes
//   trainer.run();                                                     // steps, evals, checkpoints
//
// Image classification with Vision Mamba (models/vim.h, io/image.h; docs/vision.md):
//   auto vim = mambacpp::VimModel::load("path/to/vim");              // config.json + weights (.pth too)
//   mambacpp::Tensor x = mambacpp::preprocess_image(mambacpp::read_image("cat.jpg"), {}, "cat.jpg");
//   mambacpp::Tensor logits = vim.forward(exec, x.view({1, 3, 224, 224}));  // [1, num_classes]
//
// Errors in inputs (files, configs, token ids) throw mambacpp::Error with a one-line message.
//
// Threading: a `const Model&` is immutable and may be shared by any number of threads. Everything
// that changes while a model runs belongs to one thread at a time: a State, a Session, a StepGraph
// and the execution context that carries the device stream and kernel plan (ops::Exec) — one
// Session (and one Exec) per thread. Model::to, set_matmul_dtype and set_sublayer_timing change
// the model: call them before sharing it.
//
// Applications spell every name of the library through this namespace (mambacpp::), never
// mamba::; the headers below are its implementation.
#pragma once

#include "core/checked.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/parallel.h"
#include "core/tensor.h"
#include "dist/comm.h"
#include "io/gguf.h"
#include "io/image.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/architectures.h"
#include "models/attention.h"
#include "models/config.h"
#include "models/mamba1.h"
#include "models/mamba2.h"
#include "models/mamba3.h"
#include "models/model.h"
#include "models/vim.h"
#include "ops/device.h"
#include "runtime/batch.h"
#include "runtime/gguf_tokenizer.h"
#include "runtime/model_files.h"
#include "runtime/session.h"
#include "runtime/state_io.h"
#include "runtime/step_graph.h"
#include "sampling/sampler.h"
#include "sampling/stop_criteria.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/packed.h"
#include "train/trainer.h"

namespace mambacpp {

using mamba::Device;
using mamba::DType;
using mamba::dtype_name;
using mamba::Error;
using mamba::ErrorCode;
using mamba::file_exists;
using mamba::num_threads;
using mamba::parse_byte_size;
using mamba::path_join;
using mamba::read_file;
using mamba::set_memory_ceiling;
using mamba::Shape;
using mamba::shape_str;
using mamba::Tensor;
using mamba::throw_error;
using mamba::write_file_atomic;
using mamba::io::CheckpointFormat;
using mamba::io::GgufFile;
using mamba::io::GgufTensorInfo;
using mamba::io::GgufValue;
using mamba::io::Image;
using mamba::io::ImageTransform;
using mamba::io::preprocess_image;
using mamba::io::read_image;
using mamba::io::read_npy;
using mamba::io::SafeTensors;
using mamba::io::save_safetensors;
using mamba::io::write_npy;
using mamba::models::Activations;
using mamba::models::ArchSpec;
using mamba::models::AttentionConfig;
using mamba::models::bench_model_config;
using mamba::models::bench_model_names;
using mamba::models::kind_of;
using mamba::models::LoadOptions;
using mamba::models::Mamba1Config;
using mamba::models::Mamba2Config;
using mamba::models::Mamba3Config;
using mamba::models::mixer_kind_name;
using mamba::models::MixerKind;
using mamba::models::Model;
using mamba::models::ModelConfig;
using mamba::models::next_token_targets;
using mamba::models::ParamRef;
using mamba::models::register_architecture;
using mamba::models::RopeMode;
using mamba::models::State;
using mamba::models::SublayerTimes;
using mamba::models::VimConfig;
using mamba::models::VimModel;
using mamba::ops::device_available;
using mamba::ops::device_description;
using mamba::ops::device_memory;
using mamba::ops::device_synchronize;
using mamba::ops::Exec;
using mamba::ops::KernelPlan;
using mamba::ops::op_profile_report;
using mamba::ops::op_profile_reset;
using mamba::ops::parse_device;
using mamba::ops::reset_device_memory_peak;
using mamba::runtime::BatchResult;
using mamba::runtime::eos_token_ids;
using mamba::runtime::Fingerprint;
using mamba::runtime::generate_batch;
using mamba::runtime::GenerateParams;
using mamba::runtime::GenerateResult;
using mamba::runtime::gguf_tokenizer_metadata;
using mamba::runtime::load_tokenizer;
using mamba::runtime::Session;
using mamba::runtime::SessionOptions;
using mamba::runtime::StepGraph;
using mamba::runtime::stop_reason_name;
using mamba::runtime::StopReason;
using mamba::sampling::Sampler;
using mamba::sampling::SamplingParams;
using mamba::sampling::StopCriteria;
using mamba::tok::ByteTokenizer;
using mamba::tok::StreamDecoder;
using mamba::tok::Tokenizer;

inline void set_num_threads(int n) {
  mamba::set_num_threads(n);
}

// Training (train/trainer.h): tasks, AdamW, checkpoints, the loop: mambacpp::train::Trainer.
namespace train = mamba::train;
// Collectives between the ranks of a data-parallel run (dist/comm.h; docs/distributed.md).
namespace dist = mamba::dist;

}  // namespace mambacpp
