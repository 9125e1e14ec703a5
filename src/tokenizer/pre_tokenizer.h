// Pre-tokenization of HF tokenizer.json (ByteLevel, Split, Metaspace, and Sequences of them):
// splits text into words before BPE. Words stay raw UTF-8 bytes; the byte->unicode mapping of
// ByteLevel is folded into the vocabulary at load time (see bpe.cpp). PCRE2 with UTF+UCP
// stands in for HF's Oniguruma; input must be valid UTF-8 (checked once by the caller).
// Known gap: PCRE2 10.42 counts U+180E as \s, Oniguruma (Unicode White_Space) does not.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_fields.h"

struct pcre2_real_code_8;

namespace mamba::tok {

struct Span {
  size_t begin, end;  // byte offsets, [begin, end)
};

// A compiled PCRE2 pattern (UTF, UCP, JIT when available). Thread-safe to use.
class Regex {
public:
  // Throws Error(parse) with PCRE2's message and offset, prefixed by `context`.
  Regex(const std::string& pattern, const std::string& context);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the non-empty, non-overlapping matches in `text`, left to right.
  void find_all(std::string_view text, std::vector<Span>& matches) const;
  // Whether the pattern matches starting exactly at `pos` (the whole text is context).
  bool matches_at(std::string_view text, size_t pos) const;

private:
  pcre2_real_code_8* code_ = nullptr;
};

// HF SplitDelimiterBehavior.
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

class PreTokenizer {
public:
  // Parses the "pre_tokenizer" value (null allowed). Throws Error naming `place`.
  static PreTokenizer from_json(const json& value, const JsonPlace& place);

  // Appends the words of `text` (raw bytes, never empty) to `words`. `at_start`: `text` begins
  // at offset 0 of the input (Metaspace's prepend_scheme "first" prepends only there).
  void split(std::string_view text, std::vector<std::string>& words, bool at_start = true) const;

  // Whether a ByteLevel step is present (the only case we support for BPE).
  bool byte_level() const { return byte_level_; }

private:
  enum class Prepend { always, first, never };
  struct Step {
    bool is_byte_level = false;
    bool is_metaspace = false;
    std::string replacement;  // Metaspace: stands for ' ' (usually U+2581)
    Prepend prepend = Prepend::always;
    bool split = true;                   // Metaspace: cut before each replacement
    bool add_prefix_space = false;       // ByteLevel
    std::shared_ptr<const Regex> regex;  // Split (or ByteLevel's GPT-2 regex); may be null
    std::string literal;                 // Split with a String pattern
    SplitBehavior behavior = SplitBehavior::isolated;
    bool invert = false;
  };
  void add_steps(const json& value, const JsonPlace& place);
  struct Piece {
    std::string text;
    bool at_start;  // begins at offset 0 of the input
  };
  void apply(const Step& step, const Piece& piece, std::vector<Span>& scratch, std::vector<Piece>& out) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

// GPT-2's bytes_to_unicode: the printable character that stands for each byte in vocab files.
uint32_t byte_to_unicode(uint8_t byte);
// The inverse on a whole token: its bytes, or false when a character is not a byte stand-in.
bool unicode_to_bytes(std::string_view token, std::string& bytes);

}  // namespace mamba::tok
