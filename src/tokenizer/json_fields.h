// Checked access to tokenizer.json fields: every failure is one Error line naming the file,
// the field path ("model.vocab"), what was expected and what was found.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "core/json_guard.h"

namespace mamba::tok {

using nlohmann::json;

// A position in the file: `file` for messages, `field` the dotted path inside it.
struct JsonPlace {
  const std::string& file;
  std::string field;

  JsonPlace operator/(const std::string& key) const {
    return {file, field.empty() ? key : field + "." + key};
  }
  JsonPlace at(size_t index) const { return {file, field + "[" + std::to_string(index) + "]"}; }

  template <typename... Args>
  [[noreturn]] void fail(ErrorCode code, const Args&... args) const {
    throw_error(code, file, ": ", field, ": ", args...);
  }
};

// The member `key` of `obj`, or nullptr when it is absent or null.
inline const json* find_field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline const json& require_field(const json& obj, const char* key, const JsonPlace& place) {
  const json* value = find_field(obj, key);
  if (!value) (place / key).fail(ErrorCode::parse, "missing");
  return *value;
}

inline std::string get_string(const json& value, const JsonPlace& place) {
  if (!value.is_string()) place.fail(ErrorCode::parse, "expected a string, found ", value.type_name());
  return value.get<std::string>();
}

inline bool get_bool(const json& obj, const char* key, bool fallback, const JsonPlace& place) {
  const json* value = find_field(obj, key);
  if (!value) return fallback;
  if (!value->is_boolean()) {
    (place / key).fail(ErrorCode::parse, "expected true or false, found ", value->type_name());
  }
  return value->get<bool>();
}

// The largest token id accepted: 64x the largest vocabulary in use (262,144), so that the
// id-indexed tables (one string per id) stay small whatever id a hostile file names.
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

inline int32_t get_id(const json& value, const JsonPlace& place) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > kMaxTokenId) {
    place.fail(ErrorCode::parse, "expected a token id (integer in [0, ", kMaxTokenId, "]), found ",
               json_excerpt(value));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

inline void require_object(const json& value, const JsonPlace& place) {
  if (!value.is_object()) place.fail(ErrorCode::parse, "expected an object, found ", value.type_name());
}

}  // namespace mamba::tok
