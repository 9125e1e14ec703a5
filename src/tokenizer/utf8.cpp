// UTF-8 helpers (see utf8.h). Well-formedness follows Unicode Table 3-7.
#include "tokenizer/utf8.h"

#include <algorithm>

namespace mamba::tok {

size_t utf8_sequence_length(std::string_view bytes, size_t* valid_prefix) {
  *valid_prefix = 0;
  if (bytes.empty()) return 0;
  const auto b0 = static_cast<uint8_t>(bytes[0]);
  if (b0 < 0x80) {
    *valid_prefix = 1;
    return 1;
  }
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return 0;  // continuation byte, C0/C1 or F5..FF: never valid
  }
  *valid_prefix = 1;
  for (size_t i = 1; i < need; ++i) {
    if (i >= bytes.size()) return 0;  // incomplete: valid_prefix says how far it got
    const auto b = static_cast<uint8_t>(bytes[i]);
    const uint8_t min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) return 0;
    *valid_prefix = i + 1;
  }
  return need;
}

size_t utf8_append_lossy(std::string_view bytes, std::string& out, bool final) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t run = pos;  // copy runs of ASCII in one go
    while (run < bytes.size() && static_cast<uint8_t>(bytes[run]) < 0x80) ++run;
    out.append(bytes.data() + pos, run - pos);
    pos = run;
    if (pos == bytes.size()) break;
    size_t prefix = 0;
    const size_t len = utf8_sequence_length(bytes.substr(pos), &prefix);
    if (len > 0) {
      out.append(bytes.data() + pos, len);
      pos += len;
      continue;
    }
    if (!final && prefix > 0 && pos + prefix == bytes.size()) return pos;  // wait for more
    out.append(kReplacementChar);
    pos += prefix > 0 ? prefix : 1;
  }
  return pos;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  utf8_append_lossy(bytes, out, true);
  return out;
}

size_t utf8_first_invalid(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (static_cast<uint8_t>(bytes[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t prefix = 0;
    const size_t len = utf8_sequence_length(bytes.substr(pos), &prefix);
    if (len == 0) return pos;
    pos += len;
  }
  return std::string_view::npos;
}

uint32_t utf8_decode_at(std::string_view bytes, size_t& pos) {
  const auto b0 = static_cast<uint8_t>(bytes[pos]);
  size_t len = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
  len = std::min(len, bytes.size() - pos);
  uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1Fu) : len == 3 ? (b0 & 0x0Fu) : (b0 & 0x07u);
  for (size_t i = 1; i < len; ++i) cp = (cp << 6) | (static_cast<uint8_t>(bytes[pos + i]) & 0x3Fu);
  pos += len;
  return cp;
}

void utf8_append_codepoint(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_unicode_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

}  // namespace mamba::tok
