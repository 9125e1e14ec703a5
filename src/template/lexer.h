// Tokenizer of Jinja2 template text, with Jinja2's whitespace control as HF configures it:
// `{%-`/`-%}` strip, trim_blocks (the newline after a block or comment tag is dropped) and
// lstrip_blocks (spaces before a block or comment tag on its own line are dropped), `+` to opt out.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mamba::tmpl {

enum class Tok { text, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, eof };

struct Token {
  Tok type;
  std::string text;  // text, name, operator, or the unescaped string literal
  int64_t ival = 0;
  double fval = 0;
  int line = 0, col = 0;
};

// Throws mamba::Error(parse) "<name>:<line>:<col>: <what>" on malformed tags.
std::vector<Token> tokenize(const std::string& source, const std::string& name);

}  // namespace mamba::tmpl
