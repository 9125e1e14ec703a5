// mambacpp public API, the umbrella header: every public header of the library.
//
//   common.h     errors, dtypes, devices, threads, files, KernelPlan, Context (+ the threading contract)
//   tensor.h     Tensor, .npy / .safetensors files
//   model.h      Model (load, forward, step, gradients), State, model_report, quantize
//   tokenizer.h  Tokenizer, load_tokenizer, eos_token_ids
//   session.h    Session, Sampler, generation, generate_batch
//   train.h      train::Config / Trainer / PackedTrainer / evaluate, dist::Communicator
//   vision.h     VimModel (image classification)
//   server.h     Server (OpenAI-compatible HTTP)
//   bench.h      bench:: (the `mambacpp bench` entry)
//
// These headers declare the whole public API and include nothing of src/: applications (apps/)
// compile against include/ alone, so a reach into the internals fails to build. The library's
// internals (src/, namespace mamba::) keep their own types; src/api/ implements these over them.
// bench/ and tests/ test internals and keep access to src/.
//
// Errors in inputs (files, configs, token ids) throw mambacpp::Error with a one-line message.
// Threading: common.h (one Context / Session / Trainer per thread; a const Model is shared).
#pragma once

#include <mambacpp/bench.h>
#include <mambacpp/common.h>
#include <mambacpp/model.h>
#include <mambacpp/server.h>
#include <mambacpp/session.h>
#include <mambacpp/tensor.h>
#include <mambacpp/tokenizer.h>
#include <mambacpp/train.h>
#include <mambacpp/vision.h>
