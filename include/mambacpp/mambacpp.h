// mambacpp public API: load a Mamba-family checkpoint, run it over whole sequences or one token
// at a time from an explicit state.
//
//   #include <mambacpp/mambacpp.h>
//   auto model = mambacpp::Model::load("path/to/checkpoint");       // config.json + *.safetensors
//   mambacpp::State state = model.new_state(/*batch=*/1);
//   mambacpp::Tensor ids = mambacpp::read_npy("ids.npy");            // int64 [batch, seq_len]
//   mambacpp::Tensor logits = model.forward(ids, state);             // [batch, seq_len, vocab]
//   mambacpp::Tensor next = model.step(last_ids, state);             // [batch, vocab]
//
// Errors in inputs (files, configs, token ids) throw mambacpp::Error with a one-line message.
#pragma once

#include "core/error.h"
#include "core/file_util.h"
#include "core/parallel.h"
#include "core/tensor.h"
#include "io/model_config.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"

namespace mambacpp {

using mamba::DType;
using mamba::Error;
using mamba::ErrorCode;
using mamba::Shape;
using mamba::Tensor;
using mamba::io::CheckpointFormat;
using mamba::io::MixerKind;
using mamba::io::ModelConfig;
using mamba::io::read_npy;
using mamba::io::write_npy;
using mamba::models::Model;
using mamba::models::State;

inline void set_num_threads(int n) { mamba::set_num_threads(n); }

}  // namespace mambacpp
