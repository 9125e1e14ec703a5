// Jinja2's lexer rules (jinja2/lexer.py) for the default delimiters with trim_blocks and
// lstrip_blocks on. The source's newlines are normalized to \n and one trailing newline is
// dropped, as Jinja2 does without keep_trailing_newline.
#include "template/lexer.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "core/error.h"
#include "template/text.h"

namespace mamba::tmpl {

namespace {

class Lexer {
public:
  Lexer(std::string source, const std::string& name) : src_(std::move(source)), name_(name) {
    line_starts_.push_back(0);
    for (size_t k = 0; k < src_.size(); ++k)
      if (src_[k] == '\n') line_starts_.push_back(k + 1);
  }

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      size_t start = find_tag(pos_);
      if (start == std::string::npos) {
        emit(Tok::text, pos_, src_.substr(pos_));
        break;
      }
      char kind = src_[start + 1];  // '{', '%' or '#'
      char sign = start + 2 < src_.size() ? src_[start + 2] : 0;
      if (sign != '-' && sign != '+') sign = 0;
      std::string text = src_.substr(pos_, start - pos_);
      size_t raw_end = kind == '%' ? match_raw_begin(start) : 0;
      apply_lstrip(text, sign, kind != '{', line_starting);
      if (!text.empty()) emit(Tok::text, pos_, text);
      size_t after_open = start + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        line_starting = skip_comment(start, after_open);
      } else if (raw_end) {
        line_starting = lex_raw(raw_end);
      } else {
        line_starting = lex_tag(kind == '%', start, after_open);
      }
    }
    tokens_.push_back(Token{Tok::eof, "", 0, 0, line_of(src_.size()), col_of(src_.size())});
    return std::move(tokens_);
  }

private:
  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw_error(ErrorCode::parse, name_, ":", line_of(at), ":", col_of(at), ": ", what);
  }
  int line_of(size_t at) const {
    return static_cast<int>(std::upper_bound(line_starts_.begin(), line_starts_.end(), at) -
                            line_starts_.begin());
  }
  int col_of(size_t at) const { return static_cast<int>(at - line_starts_[line_of(at) - 1]) + 1; }

  void emit(Tok type, size_t at, std::string text) {
    Token t{type, std::move(text), 0, 0, line_of(at), col_of(at)};
    tokens_.push_back(std::move(t));
  }

  size_t find_tag(size_t from) const {
    for (size_t k = src_.find('{', from); k != std::string::npos; k = src_.find('{', k + 1))
      if (k + 1 < src_.size() && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
    return std::string::npos;
  }

  // Position after whitespace (Python's \s) starting at `at`.
  size_t skip_space(size_t at) const {
    while (at < src_.size()) {
      size_t len = 1;
      unsigned char b = static_cast<unsigned char>(src_[at]);
      if (b >= 0x80) {
        len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
        std::u32string cp = utf8_decode(std::string_view(src_).substr(at, len));
        if (cp.size() != 1 || !is_py_space(cp[0])) break;
      } else if (!is_py_space(b)) {
        break;
      }
      at += len;
    }
    return at;
  }

  // `{%-`/`{%+` handling of the text before a tag (OptionalLStrip in jinja2/lexer.py).
  void apply_lstrip(std::string& text, char sign, bool block_or_comment, bool line_starting) const {
    if (sign == '-') {
      text = py_strip(text, nullptr, false, true);
      return;
    }
    if (sign == '+' || !block_or_comment) return;
    size_t l_pos = text.rfind('\n');
    l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
    if (l_pos == 0 && !line_starting) return;
    if (l_pos == text.size()) return;
    if (py_strip(std::string_view(text).substr(l_pos), nullptr, true, false).empty()) text.resize(l_pos);
  }

  // Matches `(+%}|-%}\s*|%}\n?)` (block end with trim_blocks) at `at`; returns its end or npos.
  size_t match_block_end(size_t at, bool trim) const {
    if (src_.compare(at, 3, "+%}") == 0) return at + 3;
    if (src_.compare(at, 3, "-%}") == 0) return skip_space(at + 3);
    if (src_.compare(at, 2, "%}") == 0)
      return at + 2 + (trim && at + 2 < src_.size() && src_[at + 2] == '\n');
    return std::string::npos;
  }

  // `{% raw %}`: returns the position after the tag, or 0 when this is not a raw tag.
  size_t match_raw_begin(size_t start) const {
    size_t p = start + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_space(p);
    if (src_.compare(p, 3, "raw") != 0) return 0;
    p = skip_space(p + 3);
    if (src_.compare(p, 3, "-%}") == 0) return skip_space(p + 3);
    if (src_.compare(p, 2, "%}") == 0) return p + 2;
    return 0;
  }

  bool skip_comment(size_t start, size_t from) {
    for (size_t p = from; p < src_.size(); ++p) {
      size_t end = std::string::npos;
      if (src_.compare(p, 3, "+#}") == 0)
        end = p + 3;
      else if (src_.compare(p, 3, "-#}") == 0)
        end = skip_space(p + 3);
      else if (src_.compare(p, 2, "#}") == 0)
        end = p + 2 + (p + 2 < src_.size() && src_[p + 2] == '\n');
      if (end != std::string::npos) {
        pos_ = end;
        return src_[end - 1] == '\n';
      }
    }
    fail(start, "missing end of comment tag");
  }

  bool lex_raw(size_t from) {
    for (size_t p = src_.find("{%", from); p != std::string::npos; p = src_.find("{%", p + 1)) {
      size_t q = p + 2;
      char sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q] : 0;
      if (sign) ++q;
      q = skip_space(q);
      if (src_.compare(q, 6, "endraw") != 0) continue;
      size_t end = match_block_end(skip_space(q + 6), true);
      if (end == std::string::npos) continue;
      std::string text = src_.substr(from, p - from);
      apply_lstrip(text, sign, true, false);
      if (!text.empty()) emit(Tok::text, from, text);
      pos_ = end;
      return src_[end - 1] == '\n';
    }
    fail(from, "missing end of raw directive");
  }

  bool lex_tag(bool block, size_t start, size_t p) {
    emit(block ? Tok::block_begin : Tok::var_begin, start, "");
    std::string balance;  // closing brackets expected
    while (true) {
      if (p >= src_.size())
        fail(start, block ? "unexpected end of template, expected '%}'"
                          : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (block) {
          end = match_block_end(p, true);
        } else if (src_.compare(p, 3, "-}}") == 0) {
          end = skip_space(p + 3);
        } else if (src_.compare(p, 2, "}}") == 0) {
          end = p + 2;
        }
        if (end != std::string::npos) {
          emit(block ? Tok::block_end : Tok::var_end, p, "");
          pos_ = end;
          return src_[end - 1] == '\n';
        }
      }
      size_t after_space = skip_space(p);
      if (after_space != p) {
        p = after_space;
        continue;
      }
      p = lex_token(p, balance);
    }
  }

  size_t lex_token(size_t p, std::string& balance) {
    char c = src_[p];
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(p);
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t q = p;
      while (q < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[q])) || src_[q] == '_')) ++q;
      emit(Tok::name, p, src_.substr(p, q - p));
      return q;
    }
    if (c == '\'' || c == '"') return lex_string(p);
    static const char* const kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwo)
      if (src_.compare(p, 2, op) == 0) {
        emit(Tok::op, p, op);
        return p + 2;
      }
    if (std::string("+-/*%~[](){}><=.:|,;").find(c) == std::string::npos)
      fail(p, std::string("unexpected character '") + c + "'");
    if (c == '(' || c == '[' || c == '{') balance += c == '(' ? ')' : c == '[' ? ']' : '}';
    if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) fail(p, std::string("unexpected '") + c + "'");
      if (balance.back() != c)
        fail(p, std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
      balance.pop_back();
    }
    emit(Tok::op, p, std::string(1, c));
    return p + 1;
  }

  size_t lex_number(size_t p) {
    auto digits = [&](size_t q) {
      while (q < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[q])) || src_[q] == '_')) ++q;
      return q;
    };
    size_t q = digits(p);
    bool is_float = false;
    if (q + 1 < src_.size() && src_[q] == '.' && std::isdigit(static_cast<unsigned char>(src_[q + 1]))) {
      q = digits(q + 1);
      is_float = true;
    }
    if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
      size_t r = q + 1;
      if (r < src_.size() && (src_[r] == '+' || src_[r] == '-')) ++r;
      if (r < src_.size() && std::isdigit(static_cast<unsigned char>(src_[r]))) {
        q = digits(r);
        is_float = true;
      }
    }
    std::string text;
    for (size_t k = p; k < q; ++k)
      if (src_[k] != '_') text += src_[k];
    Token t{is_float ? Tok::floating : Tok::integer, text, 0, 0, line_of(p), col_of(p)};
    if (is_float) {
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      auto res = std::from_chars(text.data(), text.data() + text.size(), t.ival);
      if (res.ec != std::errc()) fail(p, "integer literal out of range");
    }
    tokens_.push_back(std::move(t));
    return q;
  }

  size_t lex_string(size_t p) {
    char quote = src_[p];
    std::string value;
    size_t q = p + 1;
    while (true) {
      if (q >= src_.size()) fail(p, "unterminated string literal");
      char c = src_[q];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++q;
        continue;
      }
      if (q + 1 >= src_.size()) fail(p, "unterminated string literal");
      q = unescape(q, value);
    }
    emit(Tok::string, p, value);
    return q + 1;
  }

  // Python's unicode-escape of the backslash sequence at `q`; returns the position after it.
  size_t unescape(size_t q, std::string& out) {
    char e = src_[q + 1];
    auto simple = std::string("\\'\"abfnrtv\n");
    auto mapped = std::string("\\'\"\a\b\f\n\r\t\v");
    size_t k = simple.find(e);
    if (k != std::string::npos) {
      if (e != '\n') out += mapped[k];  // backslash-newline is a line continuation
      return q + 2;
    }
    if (e >= '0' && e <= '7') {
      size_t r = q + 1;
      unsigned v = 0;
      for (int n = 0; n < 3 && r < src_.size() && src_[r] >= '0' && src_[r] <= '7'; ++n, ++r)
        v = v * 8 + (src_[r] - '0');
      char32_t cp = v;
      out += utf8_encode(std::u32string_view(&cp, 1));
      return r;
    }
    int width = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (width) {
      if (q + 2 + width > src_.size()) fail(q, "truncated \\" + std::string(1, e) + " escape");
      std::string hex = src_.substr(q + 2, width);
      char32_t cp = 0;
      for (char h : hex) {
        if (!std::isxdigit(static_cast<unsigned char>(h)))
          fail(q, "truncated \\" + std::string(1, e) + " escape");
        cp = cp * 16 + (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      if (cp > 0x10FFFF) fail(q, "illegal Unicode character");
      out += utf8_encode(std::u32string_view(&cp, 1));
      return q + 2 + width;
    }
    out += '\\';  // unknown escapes stay as written
    return q + 1;
  }

  std::string src_;
  const std::string& name_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

std::string normalize_newlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t k = 0; k < source.size(); ++k) {
    if (source[k] == '\r') {
      out += '\n';
      if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
    } else {
      out += source[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

std::vector<Token> tokenize(const std::string& source, const std::string& name) {
  return Lexer(normalize_newlines(source), name).run();
}

}  // namespace mamba::tmpl
