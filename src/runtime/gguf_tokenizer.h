// A tokenizer in a GGUF file (llama.cpp's tokenizer.ggml.* keys and tokenizer.chat_template), to
// and from HF's tokenizer.json, so that a .gguf alone runs generate / serve:
//   - "gpt2" (byte-level BPE: tokens, merges, tokenizer.ggml.pre naming the split regex:
//     gpt2 / llama-bpe) <-> a ByteLevel BPE tokenizer.json;
//   - "llama" (SentencePiece: tokens, scores, token types with <0xXX> byte tokens; merges when
//     present, else derived from the scores as HF's SentencePiece converter does) <-> a BPE with
//     byte fallback and the "▁" normalizer, decoder and leading-space strip.
// Token types (llama.cpp's): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace mamba::runtime {

// What a GGUF says beside the vocabulary.
struct GgufVocabInfo {
  std::optional<int32_t> bos, eos, pad;
  bool add_bos = false;
  std::string chat_template;  // tokenizer.chat_template ("" when absent)
};

// Adds tokenizer.ggml.* for the tokenizer.json `json_text` (source names it in errors) and the
// extras of `info`. Error(unsupported) for a tokenizer llama.cpp's vocab types cannot express.
void add_gguf_tokenizer(io::GgufWriter& w, const std::string& json_text, const std::string& source,
                        const GgufVocabInfo& info);

// The tokenizer.json text a GGUF's vocabulary stands for; nullopt when the file has none
// (tokenizer.ggml.model absent or "none"). Errors name the file and key.
std::optional<std::string> gguf_tokenizer_json(const io::GgufFile& g);
GgufVocabInfo gguf_vocab_info(const io::GgufFile& g);

// tokenizer.ggml.* for a model folder (for Model::save_gguf): DIR/tokenizer.json with bos / eos
// ids from DIR/generation_config.json or config.json and the chat template and add_bos_token of
// DIR/tokenizer_config.json; empty when DIR has no tokenizer.json.
std::vector<std::pair<std::string, io::GgufValue>> gguf_tokenizer_metadata(const std::string& model_dir);

// The tokenizer of a .gguf (nullptr when it has none).
std::unique_ptr<tok::Tokenizer> load_gguf_tokenizer(const std::string& path);

}  // namespace mamba::runtime
