// Decoders (see decoder.h; HF decoders/{byte_level,replace,byte_fallback,fuse,strip}.rs and
// pre_tokenizers/metaspace.rs decode_chain semantics), as incremental transducers.
#include "tokenizer/decoder.h"

#include "tokenizer/normalizer.h"
#include "tokenizer/utf8.h"

namespace mamba::tok {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

enum class Utf8State { valid, incomplete, invalid };

// Whether `bytes` is valid UTF-8, valid but for an unfinished character at the end, or neither.
Utf8State classify(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    size_t prefix = 0;
    const size_t len = utf8_sequence_length(bytes.substr(pos), &prefix);
    if (len > 0) {
      pos += len;
      continue;
    }
    return prefix > 0 && pos + prefix == bytes.size() ? Utf8State::incomplete : Utf8State::invalid;
  }
  return Utf8State::valid;
}

// Length of the character at `text[pos]` (1 for a byte that does not start a valid one).
size_t char_length(std::string_view text, size_t pos) {
  size_t prefix = 0;
  const size_t len = utf8_sequence_length(text.substr(pos), &prefix);
  return len > 0 ? len : 1;
}

// The single character of a decoder's "content" / "replacement" field.
std::string one_char(const json& value, const JsonPlace& place) {
  const std::string text = get_string(value, place);
  if (text.empty() || utf8_first_invalid(text) != std::string::npos || char_length(text, 0) != text.size()) {
    place.fail(ErrorCode::parse, "expected a single character, found \"", text, "\"");
  }
  return text;
}

size_t get_count(const json& obj, const char* key, const JsonPlace& place) {
  const json* value = find_field(obj, key);
  if (!value) return 0;
  if (!value->is_number_unsigned()) {
    (place / key).fail(ErrorCode::parse, "expected an integer >= 0, found ", json_excerpt(*value));
  }
  return value->get<size_t>();
}

}  // namespace

int byte_token_value(std::string_view token) {
  // HF: six bytes, "<0x" .. ">", and u8::from_str_radix(token[3..5], 16) (which takes "+F").
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  if (token[3] == '+') return hex_digit(token[4]);
  const int hi = hex_digit(token[3]), lo = hex_digit(token[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

Decoder Decoder::from_json(const json& value, const JsonPlace& place) {
  Decoder decoder;
  if (value.is_null()) {
    Stage join;
    join.kind = Kind::join_space;
    decoder.stages_.push_back(std::move(join));
  } else {
    decoder.add_stages(value, place);
  }
  return decoder;
}

void Decoder::add_stages(const json& value, const JsonPlace& place) {
  require_object(value, place);
  const std::string type = get_string(require_field(value, "type", place), place / "type");
  Stage stage;
  if (type == "Sequence") {
    const json& list = require_field(value, "decoders", place);
    if (!list.is_array())
      (place / "decoders").fail(ErrorCode::parse, "expected an array, found ", list.type_name());
    for (size_t i = 0; i < list.size(); ++i) add_stages(list[i], (place / "decoders").at(i));
    return;
  }
  if (type == "ByteLevel") {
    stage.kind = Kind::byte_level;
  } else if (type == "Replace") {
    stage.kind = Kind::replace;
    const JsonPlace pattern_place = place / "pattern";
    const json& pattern = require_field(value, "pattern", place);
    require_object(pattern, pattern_place);
    if (const json* regex = find_field(pattern, "Regex")) {
      stage.regex = std::make_shared<const Regex>(get_string(*regex, pattern_place / "Regex"),
                                                  pattern_place.file + ": " + pattern_place.field);
    } else if (const json* literal = find_field(pattern, "String")) {
      stage.pattern = get_string(*literal, pattern_place / "String");
      if (stage.pattern.empty()) (pattern_place / "String").fail(ErrorCode::unsupported, "empty pattern");
    } else {
      pattern_place.fail(ErrorCode::parse, "expected {\"Regex\": ...} or {\"String\": ...}, found ",
                         json_excerpt(pattern));
    }
    stage.content = get_string(require_field(value, "content", place), place / "content");
  } else if (type == "ByteFallback") {
    stage.kind = Kind::byte_fallback;
  } else if (type == "Fuse") {
    stage.kind = Kind::fuse;
  } else if (type == "Strip") {
    stage.kind = Kind::strip;
    stage.content = one_char(require_field(value, "content", place), place / "content");
    stage.start = get_count(value, "start", place);
    stage.stop = get_count(value, "stop", place);
  } else if (type == "Metaspace") {
    stage.kind = Kind::metaspace;
    const json* replacement = find_field(value, "replacement");
    stage.replacement = replacement ? one_char(*replacement, place / "replacement") : "\xE2\x96\x81";
    if (const json* scheme = find_field(value, "prepend_scheme")) {
      const std::string name = get_string(*scheme, place / "prepend_scheme");
      if (name != "always" && name != "first" && name != "never") {
        (place / "prepend_scheme")
            .fail(ErrorCode::parse, "expected \"always\", \"first\" or \"never\", found \"", name, "\"");
      }
      stage.strip_first = name != "never";
    } else {
      stage.strip_first = get_bool(value, "add_prefix_space", true, place);
    }
  } else {
    (place / "type")
        .fail(ErrorCode::unsupported, "decoder \"", type,
              "\" is not supported (expected ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace or "
              "Sequence)");
  }
  stages_.push_back(std::move(stage));
}

std::string Decoder::token_piece(std::string_view token) const {
  std::string text(token), bytes;
  for (const Stage& stage : stages_) {
    switch (stage.kind) {
      case Kind::byte_level:
        if (unicode_to_bytes(text, bytes)) text = bytes;
        break;
      case Kind::replace:
        text = stage.regex ? replace_all(text, *stage.regex, stage.content)
                           : replace_all(text, stage.pattern, stage.content);
        break;
      case Kind::byte_fallback:
        if (const int b = byte_token_value(text); b >= 0) text = std::string(1, static_cast<char>(b));
        break;
      case Kind::metaspace:
        text = replace_all(text, stage.replacement, " ");
        break;
      case Kind::fuse:
      case Kind::strip:
      case Kind::join_space:
        break;
    }
  }
  return text;
}

std::string Decoder::decode(const std::vector<std::string_view>& tokens) const {
  Stream stream(*this);
  std::string out;
  for (std::string_view token : tokens) out += stream.push(token);
  return out + stream.flush();
}

Decoder::Stream::Stream(const Decoder& decoder) : decoder_(decoder), states_(decoder.stages_.size()) {}

std::string Decoder::Stream::push(std::string_view token) {
  feed(0, Piece{std::string(token), true, true});
  return std::exchange(out_, std::string());
}

std::string Decoder::Stream::flush() {
  for (size_t i = 0; i < states_.size(); ++i) finish(i);
  states_.assign(states_.size(), State{});
  return std::exchange(out_, std::string());
}

// Pieces after a Fuse are fragments of one token (whole = false); before it, whole tokens.
void Decoder::Stream::feed(size_t stage_index, Piece piece) {
  if (stage_index == states_.size()) {
    out_ += piece.text;
    return;
  }
  const Stage& stage = decoder_.stages_[stage_index];
  State& st = states_[stage_index];
  switch (stage.kind) {
    case Kind::byte_level: {  // one fused token, lossy UTF-8, incomplete characters held back
      std::string bytes;
      if (!unicode_to_bytes(piece.text, bytes)) bytes = piece.text;
      st.held += bytes;
      std::string text;
      st.held.erase(0, utf8_append_lossy(st.held, text, /*final=*/false));
      send(stage_index, std::move(text), !st.flag, false);
      st.flag = true;
      return;
    }
    case Kind::replace: {
      if (piece.starts) end_token(stage_index);
      if (piece.whole) {
        send(stage_index,
             stage.regex ? replace_all(piece.text, *stage.regex, stage.content)
                         : replace_all(piece.text, stage.pattern, stage.content),
             true, true);
        return;
      }
      st.buffering = true;
      st.held += piece.text;
      if (stage.regex) return;  // a regex match may span anything: wait for the token's end
      // Replace what is certain; keep the longest tail that could still start a match.
      const std::string& pattern = stage.pattern;
      std::string text;
      size_t from = 0;
      for (size_t at = st.held.find(pattern); at != std::string::npos; at = st.held.find(pattern, from)) {
        text.append(st.held, from, at - from).append(stage.content);
        from = at + pattern.size();
      }
      size_t keep = std::min(pattern.size() - 1, st.held.size() - from);
      while (keep > 0 && st.held.compare(st.held.size() - keep, keep, pattern, 0, keep) != 0) --keep;
      text.append(st.held, from, st.held.size() - keep - from);
      st.held.erase(0, st.held.size() - keep);
      send(stage_index, std::move(text), !st.started, false);
      st.started = true;
      return;
    }
    case Kind::byte_fallback: {
      if (piece.whole) {
        const int b = byte_token_value(piece.text);
        if (b < 0) {
          end_byte_run(stage_index);
          send(stage_index, std::move(piece.text), true, true);
          return;
        }
        if (st.invalid) {  // the run is already invalid: every byte token is one U+FFFD
          send(stage_index, std::string(kReplacementChar), true, true);
          return;
        }
        st.held += static_cast<char>(b);
        ++st.count;
        if (classify(st.held) == Utf8State::invalid) {
          for (size_t i = 0; i < st.count; ++i) send(stage_index, std::string(kReplacementChar), true, true);
          st.held.clear();
          st.count = 0;
          st.invalid = true;
        }
        return;
      }
      // A fragment of a fused token: it is a byte token only if it is exactly six bytes long.
      end_byte_run(stage_index);
      if (piece.starts) end_token(stage_index);
      st.buffering = true;
      if (st.flag) {
        send(stage_index, std::move(piece.text), false, false);
        return;
      }
      st.held += piece.text;
      if (st.held.size() > 6) {
        send(stage_index, std::exchange(st.held, std::string()), true, false);
        st.flag = true;
      }
      return;
    }
    case Kind::fuse:
      send(stage_index, std::move(piece.text), !st.flag, false);
      st.flag = true;
      return;
    case Kind::strip: {
      if (piece.starts) {
        end_token(stage_index);
        st.index = stage.start;
        st.flag = true;  // still at the token's start
        st.count = 0;
        st.started = false;
      }
      const std::string& content = stage.content;
      std::string text;
      for (size_t pos = 0; pos < piece.text.size();) {
        const size_t len = char_length(piece.text, pos);
        const bool is_content = piece.text.compare(pos, len, content) == 0;
        if (st.flag && st.index > 0 && is_content) {
          --st.index;
        } else if (is_content && stage.stop > 0) {
          st.flag = false;
          if (++st.count > stage.stop) {  // more than `stop` in a row: the first is certain
            text += content;
            --st.count;
          }
        } else {
          st.flag = false;
          for (; st.count > 0; --st.count) text += content;
          text.append(piece.text, pos, len);
        }
        pos += len;
      }
      if (piece.whole) {
        st.count = 0;  // the held trailing characters are stripped
        send(stage_index, std::move(text), true, true);
        return;
      }
      st.buffering = true;
      send(stage_index, std::move(text), !st.started, false);
      st.started = true;
      return;
    }
    case Kind::metaspace: {
      if (piece.starts) ++st.index;
      const bool first = st.index == 1 && stage.strip_first;  // HF: token 0 loses every replacement
      send(stage_index, replace_all(piece.text, stage.replacement, first ? "" : " "), piece.starts,
           piece.whole);
      return;
    }
    case Kind::join_space: {
      std::string text = piece.starts && st.flag ? " " + piece.text : std::move(piece.text);
      if (piece.starts) st.flag = true;
      send(stage_index, std::move(text), piece.starts, piece.whole);
      return;
    }
  }
}

// A token that came in fragments has ended: release what was held for it.
void Decoder::Stream::end_token(size_t stage_index) {
  const Stage& stage = decoder_.stages_[stage_index];
  State& st = states_[stage_index];
  if (!st.buffering) return;
  st.buffering = false;
  switch (stage.kind) {
    case Kind::replace: {
      std::string text = stage.regex ? replace_all(st.held, *stage.regex, stage.content) : st.held;
      st.held.clear();
      send(stage_index, std::move(text), !st.started, false);
      st.started = false;
      return;
    }
    case Kind::byte_fallback:
      if (!st.flag) {
        const int b = byte_token_value(st.held);
        std::string text = b < 0      ? st.held
                           : b < 0x80 ? std::string(1, static_cast<char>(b))
                                      : std::string(kReplacementChar);
        send(stage_index, std::move(text), true, false);
      }
      st.held.clear();
      st.flag = false;
      return;
    case Kind::strip:
      st.count = 0;
      st.started = false;
      return;
    default:
      return;
  }
}

void Decoder::Stream::end_byte_run(size_t stage_index) {
  State& st = states_[stage_index];
  st.invalid = false;
  if (st.count == 0) return;
  if (classify(st.held) == Utf8State::valid) {
    send(stage_index, std::exchange(st.held, std::string()), true, true);
  } else {
    for (size_t i = 0; i < st.count; ++i) send(stage_index, std::string(kReplacementChar), true, true);
  }
  st.held.clear();
  st.count = 0;
}

void Decoder::Stream::finish(size_t stage_index) {
  const Stage& stage = decoder_.stages_[stage_index];
  State& st = states_[stage_index];
  switch (stage.kind) {
    case Kind::byte_level: {
      std::string text = utf8_lossy(st.held);
      st.held.clear();
      if (!text.empty()) send(stage_index, std::move(text), !st.flag, false);
      return;
    }
    case Kind::byte_fallback:
      end_byte_run(stage_index);
      end_token(stage_index);
      return;
    default:
      end_token(stage_index);
      return;
  }
}

}  // namespace mamba::tok
