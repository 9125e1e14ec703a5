// Normalizers (see normalizer.h; HF normalizers/{prepend,replace,strip}.rs semantics).
#include "tokenizer/normalizer.h"

#include "tokenizer/utf8.h"

namespace mamba::tok {

std::string replace_all(std::string_view text, std::string_view pattern, std::string_view content) {
  std::string out;
  out.reserve(text.size());
  size_t from = 0;
  for (size_t at = text.find(pattern); at != std::string_view::npos; at = text.find(pattern, from)) {
    out.append(text.substr(from, at - from)).append(content);
    from = at + pattern.size();
  }
  out.append(text.substr(from));
  return out;
}

std::string replace_all(std::string_view text, const Regex& pattern, std::string_view content) {
  std::vector<Span> matches;
  pattern.find_all(text, matches);
  std::string out;
  out.reserve(text.size());
  size_t from = 0;
  for (const Span& m : matches) {
    out.append(text.substr(from, m.begin - from)).append(content);
    from = m.end;
  }
  out.append(text.substr(from));
  return out;
}

Normalizer Normalizer::from_json(const json& value, const JsonPlace& place) {
  Normalizer normalizer;
  if (!value.is_null()) normalizer.add_steps(value, place);
  return normalizer;
}

void Normalizer::add_steps(const json& value, const JsonPlace& place) {
  require_object(value, place);
  const std::string type = get_string(require_field(value, "type", place), place / "type");
  Step step;
  if (type == "Sequence") {
    const json& list = require_field(value, "normalizers", place);
    if (!list.is_array())
      (place / "normalizers").fail(ErrorCode::parse, "expected an array, found ", list.type_name());
    for (size_t i = 0; i < list.size(); ++i) add_steps(list[i], (place / "normalizers").at(i));
    return;
  }
  if (type == "Prepend") {
    step.kind = Kind::prepend;
    step.text = get_string(require_field(value, "prepend", place), place / "prepend");
  } else if (type == "Replace") {
    step.kind = Kind::replace;
    const JsonPlace pattern_place = place / "pattern";
    const json& pattern = require_field(value, "pattern", place);
    require_object(pattern, pattern_place);
    if (const json* regex = find_field(pattern, "Regex")) {
      step.regex = std::make_shared<const Regex>(get_string(*regex, pattern_place / "Regex"),
                                                 pattern_place.file + ": " + pattern_place.field);
    } else if (const json* literal = find_field(pattern, "String")) {
      step.text = get_string(*literal, pattern_place / "String");
      if (step.text.empty()) (pattern_place / "String").fail(ErrorCode::unsupported, "empty pattern");
    } else {
      pattern_place.fail(ErrorCode::parse, "expected {\"Regex\": ...} or {\"String\": ...}, found ",
                         json_excerpt(pattern));
    }
    step.content = get_string(require_field(value, "content", place), place / "content");
  } else if (type == "Strip") {
    step.kind = Kind::strip;
    step.left = get_bool(value, "strip_left", false, place);
    step.right = get_bool(value, "strip_right", false, place);
  } else {
    (place / "type")
        .fail(ErrorCode::unsupported, "normalizer \"", type,
              "\" is not supported (expected Prepend, Replace, Strip or Sequence)");
  }
  steps_.push_back(std::move(step));
}

std::string Normalizer::apply(std::string_view text) const {
  std::string current(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::prepend:
        if (!current.empty()) current.insert(0, step.text);  // HF: only non-empty text
        break;
      case Kind::replace:
        current = step.regex ? replace_all(current, *step.regex, step.content)
                             : replace_all(current, step.text, step.content);
        break;
      case Kind::strip: {
        size_t begin = 0, end = current.size();
        if (step.left) {
          while (begin < end) {
            size_t next = begin;
            if (!is_unicode_whitespace(utf8_decode_at(current, next))) break;
            begin = next;
          }
        }
        if (step.right) {
          while (end > begin) {
            size_t start = end - 1;
            while (start > begin && (static_cast<uint8_t>(current[start]) & 0xC0) == 0x80) --start;
            size_t probe = start;
            if (!is_unicode_whitespace(utf8_decode_at(current, probe))) break;
            end = start;
          }
        }
        current = current.substr(begin, end - begin);
        break;
      }
    }
  }
  return current;
}

}  // namespace mamba::tok
