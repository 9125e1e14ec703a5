// HF "added_tokens" (special and not): found in the raw text before pre-tokenization,
// leftmost-longest, honouring single_word / lstrip / rstrip. As in HF's AddedVocabulary,
// non-normalized tokens are split out of the raw text first; normalized ones are then found in
// the normalized form of each remaining piece (their pattern is their normalized content).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pre_tokenizer.h"

namespace mamba::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;  // match only when not inside a word (\w on neither side)
  bool lstrip = false;       // swallow whitespace on the left
  bool rstrip = false;       // swallow whitespace on the right
  bool normalized = true;
  std::string pattern;  // what is matched: the normalized content, or empty for `content`
};

// A piece of the input: plain text (id < 0) or one added token.
struct TextSegment {
  size_t begin, end;
  int32_t id;
};

class AddedTokens {
public:
  AddedTokens();
  explicit AddedTokens(std::vector<AddedToken> tokens);

  // Cuts `text` into segments covering it in order (empty text: no segments): both passes,
  // for the identity normalizer.
  void split(std::string_view text, std::vector<TextSegment>& out) const;
  // One pass: the non-normalized tokens in raw text, or the normalized ones in normalized text.
  void split_raw(std::string_view text, std::vector<TextSegment>& out) const { split_pass(text, raw_, out); }
  void split_normalized(std::string_view text, std::vector<TextSegment>& out) const {
    split_pass(text, normalized_, out);
  }

  std::optional<int32_t> find(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

private:
  // Token indexes by first byte, longest first, for one matching pass.
  struct Matcher {
    std::array<std::vector<int32_t>, 256> by_first_byte;
    bool empty = true;
  };
  void split_pass(std::string_view text, const Matcher& matcher, std::vector<TextSegment>& out) const;
  bool is_word_char_before(std::string_view text, size_t pos) const;
  bool is_word_char_at(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, int32_t> by_content_;
  Matcher raw_, normalized_;
  std::shared_ptr<const Regex> word_char_;  // \w, for single_word
};

}  // namespace mamba::tok
