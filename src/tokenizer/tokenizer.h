// Tokenizers: the `Tokenizer` interface, HF tokenizer.json BPE (`from_file`: byte-level as
// GPT-2 / Llama-3, or SentencePiece-style with byte fallback as Llama-2 / Mistral / Jamba /
// Zamba2), a raw byte tokenizer, and `StreamDecoder`, which turns generated ids into text without ever
// emitting half a UTF-8 character. Usage:
//   auto tok = mamba::tok::Tokenizer::from_file("tokenizer.json");
//   std::vector<int32_t> ids = tok->encode("Hello");   // no BOS/EOS added: see bos_id()
//   StreamDecoder stream(*tok);  for (int32_t id : generated) std::cout << stream.push(id);
//   std::cout << stream.flush();
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mamba::tok {

// Incremental decoding state of one tokenizer (see StreamDecoder, which is what to use).
class DecodeStream {
public:
  virtual ~DecodeStream() = default;
  virtual std::string push(int32_t id) = 0;
  virtual std::string flush() = 0;  // everything held back; then starts afresh
};

// Immutable after construction: one tokenizer may be shared by many threads.
class Tokenizer {
public:
  virtual ~Tokenizer() = default;

  // Text -> ids. Special tokens written in the text are matched (as HF does by default), but
  // none are added: callers prepend bos_id() where the model wants it. Throws Error
  // (invalid_argument) for text that is not valid UTF-8 where the tokenizer needs UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;

  // Ids -> text as HF's decode(ids, skip_special_tokens=False): for byte-level tokenizers the
  // tokens' bytes joined, ill-formed UTF-8 replaced by U+FFFD; otherwise the tokenizer file's
  // decoder chain (e.g. "▁" -> " ", <0xXX> byte tokens -> UTF-8, the first space stripped).
  // Special tokens are kept. Throws Error (out_of_range) naming an id outside the vocabulary.
  virtual std::string decode(const std::vector<int32_t>& ids) const;

  // State for StreamDecoder; nullptr (the default) means "token_text bytes, UTF-8 held back".
  virtual std::unique_ptr<DecodeStream> decode_stream() const { return nullptr; }

  // The raw bytes of one token (may be part of a UTF-8 character; "▁" shown as " ", a <0xXX>
  // byte token as its byte); "" for an unknown id. Not always a piece of decode(): that may
  // also strip a leading space or replace ill-formed byte runs.
  virtual std::string token_text(int32_t id) const = 0;

  // Rows the embedding needs: 1 + the largest id of any token.
  virtual int32_t vocab_size() const = 0;

  // Id of a token as written in the tokenizer file (added/special tokens first, e.g.
  // "<|endoftext|>", then the vocabulary, e.g. "Ġthe"), or nullopt.
  virtual std::optional<int32_t> token_id(std::string_view token) const = 0;

  // Begin/end-of-sequence ids where the tokenizer file determines them (from its
  // post_processor), otherwise nullopt.
  virtual std::optional<int32_t> bos_id() const { return std::nullopt; }
  virtual std::optional<int32_t> eos_id() const { return std::nullopt; }

  // Loads a Hugging Face tokenizer.json (byte-level BPE). Throws Error naming the file and
  // the problem for a missing file, bad JSON or an unsupported configuration.
  static std::unique_ptr<Tokenizer> from_file(const std::string& path);
  // The same from the text of a tokenizer.json (`source` names it in errors; a GGUF's vocabulary
  // comes this way, runtime/gguf_tokenizer.h).
  static std::unique_ptr<Tokenizer> from_json_text(const std::string& text, const std::string& source);
};

// Ids 0..255 are the bytes themselves (for byte-level models); no special tokens.
class ByteTokenizer final : public Tokenizer {
public:
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string token_text(int32_t id) const override;
  int32_t vocab_size() const override { return 256; }
  std::optional<int32_t> token_id(std::string_view token) const override;  // one byte -> its id
};

// Incremental decoding for generation: push() returns the text completed by each new token,
// holding back what a later token could still change: the bytes of a character that is still
// incomplete and, for SentencePiece-style tokenizers, a run of <0xXX> byte tokens (HF turns
// an ill-formed run into one U+FFFD per token) or trailing characters a Strip decoder may
// remove. Concatenating every push() and the final flush() gives exactly
// tokenizer.decode(all ids); an id outside the vocabulary adds nothing (decode would throw).
class StreamDecoder {
public:
  explicit StreamDecoder(const Tokenizer& tokenizer)
      : tokenizer_(tokenizer), stream_(tokenizer.decode_stream()) {}

  std::string push(int32_t id);
  // Emits whatever is held back (an unfinished character becomes U+FFFD) and resets.
  std::string flush();

private:
  const Tokenizer& tokenizer_;
  std::unique_ptr<DecodeStream> stream_;  // the tokenizer's own, or null: the bytes path below
  std::string pending_;                   // at most 3 bytes: the start of an unfinished character
};

}  // namespace mamba::tok
