// Pre-tokenizers (see pre_tokenizer.h). Split semantics follow HF's SplitDelimiterBehavior:
// the text is cut into alternating matched / unmatched spans, which are then kept, dropped
// or glued to a neighbour.
#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>

#include "tokenizer/utf8.h"

namespace mamba::tok {
namespace {

// GPT-2's word regex, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Per-thread match scratch: one ovector pair (we only need the whole match) and a JIT stack
// larger than the 32 KiB default, for long runs of whitespace.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, jit_stack); }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchScratch& match_scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

// Runs one match from `offset`; returns false when there is none.
bool match_once(const pcre2_code* code, std::string_view text, size_t offset, uint32_t options, Span& match) {
  MatchScratch& scratch = match_scratch();
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), offset,
                             options | PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw_error(ErrorCode::invalid_argument, "pre-tokenizer regex failed: ", pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
  match = {ovector[0], ovector[1]};
  return true;
}

SplitBehavior parse_behavior(const json& value, const JsonPlace& place) {
  const std::string name = get_string(value, place);
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  place.fail(ErrorCode::unsupported, "expected Removed, Isolated, MergedWithPrevious, MergedWithNext ",
             "or Contiguous, found \"", name, "\"");
}

struct Segment {
  Span span;
  bool is_match;
};

// Glues matched spans to their neighbours as `behavior` says (HF pre_tokenizer.rs split).
std::vector<Span> arrange(const std::vector<Segment>& segments, SplitBehavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::isolated:
      for (const Segment& s : segments) out.push_back(s.span);
      break;
    case SplitBehavior::removed:
      for (const Segment& s : segments) {
        if (!s.is_match) out.push_back(s.span);
      }
      break;
    case SplitBehavior::merged_with_previous:
      for (const Segment& s : segments) {
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().end = s.span.end;
        } else {
          out.push_back(s.span);
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::merged_with_next:
      for (size_t i = segments.size(); i-- > 0;) {
        const Segment& s = segments[i];
        if (s.is_match && !previous_match && !out.empty()) {
          out.back().begin = s.span.begin;
        } else {
          out.push_back(s.span);
        }
        previous_match = s.is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    case SplitBehavior::contiguous:
      for (size_t i = 0; i < segments.size(); ++i) {
        if (i > 0 && segments[i].is_match == previous_match) {
          out.back().end = segments[i].span.end;
        } else {
          out.push_back(segments[i].span);
        }
        previous_match = segments[i].is_match;
      }
      break;
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& context) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                        &error, &error_offset, nullptr);
  if (!code_) {
    throw_error(ErrorCode::parse, context, ": regex does not compile (", pcre2_message(error), " at offset ",
                error_offset, ")");
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if unavailable
}

Regex::~Regex() {
  pcre2_code_free(code_);
}

void Regex::find_all(std::string_view text, std::vector<Span>& matches) const {
  size_t offset = 0;
  Span match{};
  while (offset < text.size() && match_once(code_, text, offset, 0, match)) {
    if (match.end == match.begin) {  // empty match: HF drops it; step over one character
      size_t next = match.begin;
      utf8_decode_at(text, next);
      offset = next;
      continue;
    }
    matches.push_back(match);
    offset = match.end;
  }
}

bool Regex::matches_at(std::string_view text, size_t pos) const {
  Span match{};
  return match_once(code_, text, pos, PCRE2_ANCHORED, match);
}

PreTokenizer PreTokenizer::from_json(const json& value, const JsonPlace& place) {
  PreTokenizer pre;
  if (!value.is_null()) pre.add_steps(value, place);
  return pre;
}

void PreTokenizer::add_steps(const json& value, const JsonPlace& place) {
  require_object(value, place);
  const std::string type = get_string(require_field(value, "type", place), place / "type");
  if (type == "Sequence") {
    const json& list = require_field(value, "pretokenizers", place);
    if (!list.is_array())
      (place / "pretokenizers").fail(ErrorCode::parse, "expected an array, found ", list.type_name());
    for (size_t i = 0; i < list.size(); ++i) add_steps(list[i], (place / "pretokenizers").at(i));
    return;
  }
  Step step;
  if (type == "ByteLevel") {
    step.is_byte_level = true;
    step.add_prefix_space = get_bool(value, "add_prefix_space", true, place);
    if (get_bool(value, "use_regex", true, place)) {
      static const auto gpt2 = std::make_shared<const Regex>(kGpt2Pattern, "GPT-2 regex");
      step.regex = gpt2;
    }
    byte_level_ = true;
  } else if (type == "Split") {
    const JsonPlace pattern_place = place / "pattern";
    const json& pattern = require_field(value, "pattern", place);
    require_object(pattern, pattern_place);
    if (const json* regex = find_field(pattern, "Regex")) {
      step.regex = std::make_shared<const Regex>(get_string(*regex, pattern_place / "Regex"),
                                                 pattern_place.file + ": " + pattern_place.field);
    } else if (const json* literal = find_field(pattern, "String")) {
      step.literal = get_string(*literal, pattern_place / "String");
    } else {
      pattern_place.fail(ErrorCode::parse, "expected {\"Regex\": ...} or {\"String\": ...}, found ",
                         json_excerpt(pattern));
    }
    step.behavior = parse_behavior(require_field(value, "behavior", place), place / "behavior");
    step.invert = get_bool(value, "invert", false, place);
  } else if (type == "Metaspace") {
    step.is_metaspace = true;
    const json* replacement = find_field(value, "replacement");
    step.replacement = replacement ? get_string(*replacement, place / "replacement") : "\xE2\x96\x81";
    if (step.replacement.empty() || utf8_first_invalid(step.replacement) != std::string::npos) {
      (place / "replacement")
          .fail(ErrorCode::parse, "expected a single character, found \"", step.replacement, "\"");
    }
    if (const json* scheme = find_field(value, "prepend_scheme")) {
      const std::string name = get_string(*scheme, place / "prepend_scheme");
      if (name == "always") {
        step.prepend = Prepend::always;
      } else if (name == "first") {
        step.prepend = Prepend::first;
      } else if (name == "never") {
        step.prepend = Prepend::never;
      } else {
        (place / "prepend_scheme")
            .fail(ErrorCode::parse, "expected \"always\", \"first\" or \"never\", found \"", name, "\"");
      }
    } else {  // files from before prepend_scheme: add_prefix_space (default true)
      step.prepend = get_bool(value, "add_prefix_space", true, place) ? Prepend::always : Prepend::never;
    }
    step.split = get_bool(value, "split", true, place);
    step.behavior = SplitBehavior::merged_with_next;
  } else {
    (place / "type")
        .fail(ErrorCode::unsupported, "pre-tokenizer \"", type,
              "\" is not supported (expected ByteLevel, Split, Metaspace or Sequence)");
  }
  steps_.push_back(std::move(step));
}

void PreTokenizer::split(std::string_view text, std::vector<std::string>& words, bool at_start) const {
  if (text.empty()) return;
  std::vector<Piece> pieces{Piece{std::string(text), at_start}}, next;
  std::vector<Span> scratch;
  for (const Step& step : steps_) {
    next.clear();
    for (const Piece& piece : pieces) apply(step, piece, scratch, next);
    pieces.swap(next);
  }
  for (Piece& piece : pieces) words.push_back(std::move(piece.text));
}

void PreTokenizer::apply(const Step& step, const Piece& input, std::vector<Span>& scratch,
                         std::vector<Piece>& out) const {
  std::string_view piece = input.text;
  std::string rewritten;
  if (step.is_byte_level && step.add_prefix_space && piece.front() != ' ') {
    rewritten.append(1, ' ').append(piece);  // not " " + string: GCC 12 -O3 -Wrestrict false positive
    piece = rewritten;
  }
  if (step.is_metaspace) {  // HF: spaces become the replacement, then the prefix per prepend_scheme
    size_t from = 0;
    for (size_t at = piece.find(' '); at != std::string_view::npos; at = piece.find(' ', from)) {
      rewritten.append(piece.substr(from, at - from)).append(step.replacement);
      from = at + 1;
    }
    rewritten.append(piece.substr(from));
    const bool starts_with_replacement = rewritten.compare(0, step.replacement.size(), step.replacement) == 0;
    if (!starts_with_replacement &&
        (step.prepend == Prepend::always || (step.prepend == Prepend::first && input.at_start))) {
      rewritten.insert(0, step.replacement);
    }
    piece = rewritten;
    if (!step.split) {
      out.push_back({std::string(piece), input.at_start});
      return;
    }
  }
  if (step.is_byte_level && !step.regex) {
    out.push_back({std::string(piece), input.at_start});
    return;
  }
  scratch.clear();
  const std::string& literal = step.is_metaspace ? step.replacement : step.literal;
  if (step.regex) {
    step.regex->find_all(piece, scratch);
  } else if (!literal.empty()) {
    for (size_t at = piece.find(literal); at != std::string_view::npos;
         at = piece.find(literal, at + literal.size())) {
      scratch.push_back({at, at + literal.size()});
    }
  }
  std::vector<Segment> segments;
  size_t previous = 0;
  for (const Span& match : scratch) {
    if (match.begin > previous) segments.push_back({{previous, match.begin}, step.invert});
    segments.push_back({match, !step.invert});
    previous = match.end;
  }
  if (previous < piece.size()) segments.push_back({{previous, piece.size()}, step.invert});
  for (const Span& span : arrange(segments, step.behavior)) {
    if (span.end > span.begin) {
      out.push_back(
          {std::string(piece.substr(span.begin, span.end - span.begin)), input.at_start && span.begin == 0});
    }
  }
}

namespace {

// bytes_to_unicode: printable Latin-1 bytes stand for themselves; the other 68 bytes map, in
// order, to U+0100 onwards.
struct ByteLevelTables {
  std::array<uint32_t, 256> to_unicode{};
  std::array<int16_t, 256 + 68> to_byte{};
  ByteLevelTables() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_unicode[b] = printable ? b : next++;
      to_byte[to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

uint32_t byte_to_unicode(uint8_t byte) {
  return byte_level_tables().to_unicode[byte];
}

bool unicode_to_bytes(std::string_view token, std::string& bytes) {
  const auto& to_byte = byte_level_tables().to_byte;
  bytes.clear();
  for (size_t pos = 0; pos < token.size();) {
    const uint32_t cp = utf8_decode_at(token, pos);
    if (cp >= to_byte.size() || to_byte[cp] < 0) return false;
    bytes += static_cast<char>(to_byte[cp]);
  }
  return true;
}

}  // namespace mamba::tok
