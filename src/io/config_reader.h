// Typed reads of config.json fields with one-line errors naming the file and the field
// ("DIR/config.json: field 'ssm_cfg.d_state' expected an integer, found string \"x\"").
// Shared by io/model_config and the model families (models/families/).
#pragma once
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/json_guard.h"

namespace mamba::io {

struct Reader {
  using json = nlohmann::json;
  const json& j;
  std::string source, prefix;

  std::string where(const std::string& key) const { return source + ": field '" + prefix + key + "'"; }

  [[noreturn]] void type_error(const std::string& key, const char* expected, const json& v) const {
    throw_error(ErrorCode::parse, where(key), " expected ", expected, ", found ", v.type_name(), " ",
                json_excerpt(v));
  }

  bool has(const std::string& key) const { return j.contains(key) && !j.at(key).is_null(); }

  double number(const std::string& key, double def) const {
    if (!has(key)) return def;
    return to_number(key, j.at(key));
  }
  double to_number(const std::string& key, const json& v) const {
    if (v.is_number()) return v.get<double>();
    // HF writes {"__float__": "Infinity"}; Python's json writes bare Infinity (quoted above).
    const json& s = v.is_object() && v.contains("__float__") ? v.at("__float__") : v;
    if (s.is_string()) {
      const std::string t = s.get<std::string>();
      if (t == "Infinity" || t == "inf") return INFINITY;
      if (t == "-Infinity" || t == "-inf") return -INFINITY;
    }
    type_error(key, "a number", v);
  }
  int64_t integer(const std::string& key, int64_t def) const {
    if (!has(key)) return def;
    const json& v = j.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    // A whole float (HF writes 4096.0) within int64's range; 1e30 would be a UB cast.
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
        std::fabs(v.get<double>()) < 9.2e18)
      return static_cast<int64_t>(v.get<double>());
    type_error(key, "an integer", v);
  }
  bool boolean(const std::string& key, bool def) const {
    if (!has(key)) return def;
    const json& v = j.at(key);
    if (!v.is_boolean()) type_error(key, "true or false", v);
    return v.get<bool>();
  }
  std::string string(const std::string& key, const std::string& def) const {
    if (!has(key)) return def;
    const json& v = j.at(key);
    if (!v.is_string()) type_error(key, "a string", v);
    return v.get<std::string>();
  }
  Reader child(const std::string& key) const {
    static const json empty = json::object();
    if (!has(key)) return Reader{empty, source, prefix + key + "."};
    if (!j.at(key).is_object()) type_error(key, "an object", j.at(key));
    return Reader{j.at(key), source, prefix + key + "."};
  }
};

// A list of integers (e.g. layer indices), or `def` when the key is absent.
inline std::vector<int64_t> int_list(const Reader& r, const std::string& key, std::vector<int64_t> def = {}) {
  if (!r.has(key)) return def;
  const nlohmann::json& v = r.j.at(key);
  if (!v.is_array()) r.type_error(key, "a list of integers", v);
  std::vector<int64_t> out;
  for (const nlohmann::json& e : v) {
    if (!e.is_number_integer()) r.type_error(key, "a list of integers", v);
    out.push_back(e.get<int64_t>());
  }
  return out;
}

// A list of numbers, or `def` when the key is absent.
inline std::vector<double> number_list(const Reader& r, const std::string& key,
                                       std::vector<double> def = {}) {
  if (!r.has(key)) return def;
  const nlohmann::json& v = r.j.at(key);
  if (!v.is_array()) r.type_error(key, "a list of numbers", v);
  std::vector<double> out;
  for (const nlohmann::json& e : v) out.push_back(r.to_number(key, e));
  return out;
}

// A list of strings, or `def` when the key is absent.
inline std::vector<std::string> string_list(const Reader& r, const std::string& key,
                                            std::vector<std::string> def = {}) {
  if (!r.has(key)) return def;
  const nlohmann::json& v = r.j.at(key);
  if (!v.is_array()) r.type_error(key, "a list of strings", v);
  std::vector<std::string> out;
  for (const nlohmann::json& e : v) {
    if (!e.is_string()) r.type_error(key, "a list of strings", v);
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace mamba::io
