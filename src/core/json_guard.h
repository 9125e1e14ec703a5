// Guards for JSON from strangers (config.json, tokenizer.json, safetensors headers, HTTP bodies):
// the nesting depth is checked on the raw text before nlohmann parses it (its parser, serializer
// and destructor recurse per level, so `[[[[...` a million deep overflows the stack), and error
// messages quote a short excerpt of a value instead of dumping it whole.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "core/error.h"

namespace mamba {

// Deepest JSON nesting accepted anywhere (real files nest < 10 levels; chat requests < 20).
constexpr int kMaxJsonDepth = 128;

// The deepest nesting of [ and { outside strings, scanning stops past `limit`.
int json_nesting_depth(std::string_view text, int limit = kMaxJsonDepth);

// Throws Error(parse) "<source>: JSON nested deeper than N levels" before any parse.
inline void check_json_depth(std::string_view text, const std::string& source, int limit = kMaxJsonDepth) {
  if (json_nesting_depth(text, limit) > limit)
    throw_error(ErrorCode::parse, source, ": JSON nested deeper than ", limit, " levels");
}

// A one-line description of a JSON value for error messages: scalars as written (strings cut to
// `max_chars` with "..."), containers as written when short, else "an array of N elements" /
// "an object of N keys". Only for JSON whose depth was checked (check_json_depth): dump recurses.
// A template so that core needs no nlohmann include; J is nlohmann::json or ordered_json.
template <typename J>
std::string json_excerpt(const J& v, size_t max_chars = 40) {
  if (v.is_array() || v.is_object()) {
    // A small container as written ([8, 0]); a large one by size (its dump could be megabytes).
    if (v.size() <= 8) {
      const std::string d = v.dump(-1, ' ', false, J::error_handler_t::replace);
      if (d.size() <= max_chars) return d;
    }
    return v.is_array() ? "an array of " + std::to_string(v.size()) + " elements"
                        : "an object of " + std::to_string(v.size()) + " keys";
  }
  if (v.is_string()) {
    const std::string& s = v.template get_ref<const std::string&>();
    std::string out = s.size() <= max_chars ? s : s.substr(0, max_chars) + "...";
    return static_cast<std::string>(J(out).dump(-1, ' ', false, J::error_handler_t::replace));
  }
  std::string out = v.dump(-1, ' ', false, J::error_handler_t::replace);
  return out.size() <= max_chars ? out : out.substr(0, max_chars) + "...";
}

}  // namespace mamba
