// Normalizers of HF tokenizer.json applied to the text between added tokens before
// pre-tokenization: Prepend, Replace (String or Regex pattern), Strip (whitespace) and
// Sequences of them; null or an empty Sequence is the identity. Others (NFKC, Lowercase, ...)
// are rejected at load with an Error naming the field.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_fields.h"
#include "tokenizer/pre_tokenizer.h"

namespace mamba::tok {

class Normalizer {
public:
  // Parses the "normalizer" value (null allowed). Throws Error naming `place`.
  static Normalizer from_json(const json& value, const JsonPlace& place);

  bool identity() const { return steps_.empty(); }
  // The normalized form of `text` (valid UTF-8 in, valid UTF-8 out).
  std::string apply(std::string_view text) const;

private:
  enum class Kind { prepend, replace, strip };
  struct Step {
    Kind kind = Kind::prepend;
    std::string text;                    // prepend: the prefix; replace: the literal pattern
    std::string content;                 // replace: the replacement
    std::shared_ptr<const Regex> regex;  // replace with a Regex pattern
    bool left = false, right = false;    // strip
  };
  void add_steps(const json& value, const JsonPlace& place);

  std::vector<Step> steps_;
};

// Replaces every non-overlapping occurrence of `pattern` (literal, non-empty) in `text`.
std::string replace_all(std::string_view text, std::string_view pattern, std::string_view content);
// Same with a regex: each non-empty match, left to right.
std::string replace_all(std::string_view text, const Regex& pattern, std::string_view content);

}  // namespace mamba::tok
