// Tokenizers: the `Tokenizer` interface, HF tokenizer.json byte-level BPE (`from_file`), a raw
// byte tokenizer, and `StreamDecoder`, which turns generated ids into text without ever
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

// Immutable after construction: one tokenizer may be shared by many threads.
class Tokenizer {
public:
  virtual ~Tokenizer() = default;

  // Text -> ids. Special tokens written in the text are matched (as HF does by default), but
  // none are added: callers prepend bos_id() where the model wants it. Throws Error
  // (invalid_argument) for text that is not valid UTF-8 where the tokenizer needs UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;

  // Ids -> text: the tokens' bytes joined, ill-formed UTF-8 replaced by U+FFFD. Special tokens
  // are kept; ids outside the vocabulary decode to nothing.
  virtual std::string decode(const std::vector<int32_t>& ids) const;

  // The raw bytes of one token (may be part of a UTF-8 character); "" for an unknown id.
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
// holding back the bytes of a character that is still incomplete. Concatenating every
// push() and the final flush() gives exactly tokenizer.decode(all ids).
class StreamDecoder {
public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  std::string push(int32_t id);
  // Emits whatever is held back (an unfinished character becomes U+FFFD) and resets.
  std::string flush();

private:
  const Tokenizer& tokenizer_;
  std::string pending_;  // at most 3 bytes: the start of an unfinished character
};

}  // namespace mamba::tok
