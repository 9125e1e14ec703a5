// What generation reads from a model folder besides the weights: the tokenizer
// (DIR/tokenizer.json) and the end-of-sequence ids (generation_config.json, config.json, then
// the tokenizer's own).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace mamba::runtime {

// `path` if given (it must load; "byte": one token per byte), else a .gguf's own vocabulary
// (tokenizer.ggml.*, runtime/gguf_tokenizer.h; null when it has none), else DIR/tokenizer.json if present,
// else the byte tokenizer when DIR/config.json says "tokenizer": "byte" (byte-level models that
// `train --task text` writes), else null.
std::unique_ptr<tok::Tokenizer> load_tokenizer(const std::string& model_dir, const std::string& path = "");

// A .gguf's tokenizer.ggml.eos_token_id, else eos_token_id (a number or a list) of
// DIR/generation_config.json, else of DIR/config.json, else the tokenizer's eos_id(), else its
// "<|endoftext|>" token (the GPT-NeoX tokenizer of the state-spaces checkpoints); empty when none of these
// exists.
std::vector<int32_t> eos_token_ids(const std::string& model_dir, const tok::Tokenizer* tokenizer);

}  // namespace mamba::runtime
