// Added-token matching (see added_tokens.h; HF added_vocabulary.rs find_matches).
#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace mamba::tok {
namespace {

// Byte length of the whitespace run that ends at `end` (scanning left) or starts at `begin`.
size_t whitespace_before(std::string_view text, size_t end, size_t limit) {
  size_t pos = end;
  while (pos > limit) {
    size_t start = pos - 1;
    while (start > limit && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    size_t probe = start;
    if (!is_unicode_whitespace(utf8_decode_at(text, probe))) break;
    pos = start;
  }
  return end - pos;
}

size_t whitespace_after(std::string_view text, size_t begin) {
  size_t pos = begin;
  while (pos < text.size()) {
    size_t probe = pos;
    if (!is_unicode_whitespace(utf8_decode_at(text, probe))) break;
    pos = probe;
  }
  return pos - begin;
}

}  // namespace

AddedTokens::AddedTokens() : AddedTokens(std::vector<AddedToken>{}) {}

AddedTokens::AddedTokens(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  static const auto word_char = std::make_shared<const Regex>(R"(\w)", "word regex");
  word_char_ = word_char;
  for (size_t i = 0; i < tokens_.size(); ++i) {
    AddedToken& token = tokens_[i];
    by_content_.emplace(token.content, token.id);
    if (token.pattern.empty()) token.pattern = token.content;
    if (token.pattern.empty()) continue;
    Matcher& matcher = token.normalized ? normalized_ : raw_;
    matcher.by_first_byte[static_cast<uint8_t>(token.pattern[0])].push_back(static_cast<int32_t>(i));
    matcher.empty = false;
  }
  for (Matcher* matcher : {&raw_, &normalized_}) {
    for (auto& list : matcher->by_first_byte) {
      std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
        return tokens_[a].pattern.size() > tokens_[b].pattern.size();
      });
    }
  }
}

std::optional<int32_t> AddedTokens::find(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

void AddedTokens::split(std::string_view text, std::vector<TextSegment>& out) const {
  std::vector<TextSegment> first;
  split_pass(text, raw_, first);
  for (const TextSegment& segment : first) {
    if (segment.id >= 0 || normalized_.empty) {
      out.push_back(segment);
      continue;
    }
    // Normalized tokens are matched inside each remaining plain piece, on its own.
    std::vector<TextSegment> inner;
    split_pass(text.substr(segment.begin, segment.end - segment.begin), normalized_, inner);
    for (TextSegment s : inner) out.push_back({s.begin + segment.begin, s.end + segment.begin, s.id});
  }
}

bool AddedTokens::is_word_char_before(std::string_view text, size_t pos) const {
  if (pos == 0) return false;
  size_t start = pos - 1;
  while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  return word_char_->matches_at(text.substr(0, pos), start);
}

bool AddedTokens::is_word_char_at(std::string_view text, size_t pos) const {
  return pos < text.size() && word_char_->matches_at(text, pos);
}

void AddedTokens::split_pass(std::string_view text, const Matcher& matcher,
                             std::vector<TextSegment>& out) const {
  size_t emitted = 0;  // end of the last segment pushed
  size_t pos = 0;
  while (!matcher.empty && pos < text.size()) {
    const auto& candidates = matcher.by_first_byte[static_cast<uint8_t>(text[pos])];
    const AddedToken* hit = nullptr;
    for (int32_t index : candidates) {
      const std::string& pattern = tokens_[index].pattern;
      if (text.compare(pos, pattern.size(), pattern) == 0) {
        hit = &tokens_[index];
        break;  // longest first
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t begin = pos, end = pos + hit->pattern.size();
    pos = end;
    if (hit->single_word && (is_word_char_before(text, begin) || is_word_char_at(text, end))) continue;
    if (hit->lstrip) begin -= whitespace_before(text, begin, emitted);
    if (hit->rstrip) end += whitespace_after(text, end);
    if (begin > emitted) out.push_back({emitted, begin, -1});
    out.push_back({begin, end, hit->id});
    emitted = pos = end;
  }
  if (emitted < text.size()) out.push_back({emitted, text.size(), -1});
}

}  // namespace mamba::tok
