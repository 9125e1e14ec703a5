// Python-like string helpers for the template engine, over UTF-8 code points: strip/split as
// str.strip()/str.split(), case mapping, Python's repr of floats. Ill-formed bytes round-trip
// unchanged (each becomes a private code point on decode, the same byte on encode).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mamba::tmpl {

std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view cps);
size_t utf8_length(std::string_view s);  // code points

bool is_py_space(char32_t c);  // Python's str.isspace / the `\s` of re
bool is_cased(char32_t c);
char32_t to_lower_cp(char32_t c);
char32_t to_upper_cp(char32_t c);

std::string py_lower(std::string_view s);
std::string py_upper(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()

// str.strip([chars]) family; `chars` null means whitespace.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep=None, maxsplit=-1).
std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit);
std::string py_replace(std::string_view s, std::string_view from, std::string_view to, int64_t count);

// repr(float): shortest round-trip digits, "1.0", "1e+16", "1e-05", "inf", "nan".
std::string py_float_repr(double v);
// repr(str): quoted with ' (or " when the text holds ' but no "), escapes as Python does.
std::string py_str_repr(std::string_view s);

}  // namespace mamba::tmpl
