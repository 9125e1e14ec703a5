// Values of the template language, with Python's semantics: str() and repr() text,
// truthiness, ==, ordering, and json.dumps as HF's `tojson` filter calls it. Lists and dicts
// are shared (copying a Value is cheap); only namespaces are mutated after construction.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mamba::tmpl {

// A render-time error; the interpreter prefixes the template location when it is not set yet.
struct TemplateError : std::runtime_error {
  explicit TemplateError(const std::string& msg, bool located_ = false)
      : std::runtime_error(msg), located(located_) {}
  bool located;
};
// raise_exception(msg): the message is shown as is.
struct RaisedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, function, ns };

struct Value;
using List = std::vector<Value>;
struct Dict;
struct CallArgs;
using Function = std::function<Value(CallArgs&)>;

struct Value {
  Kind kind = Kind::undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // the string; for undefined, what was looked up (for error messages)
  std::shared_ptr<List> list;
  bool tuple = false;          // a list written (a, b): prints with parentheses
  std::shared_ptr<Dict> dict;  // dict or namespace
  std::shared_ptr<Function> fn;

  static Value undefined(std::string what = "") {
    Value v;
    v.s = std::move(what);
    return v;
  }
  static Value none() { return with_kind(Kind::none); }
  static Value boolean(bool x) {
    Value v = with_kind(Kind::boolean);
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v = with_kind(Kind::integer);
    v.i = x;
    return v;
  }
  static Value floating(double x) {
    Value v = with_kind(Kind::floating);
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v = with_kind(Kind::string);
    v.s = std::move(x);
    return v;
  }
  static Value make_list(List items = {}, bool is_tuple = false);
  static Value make_dict();
  static Value make_namespace();
  static Value function(Function f) {
    Value v = with_kind(Kind::function);
    v.fn = std::make_shared<Function>(std::move(f));
    return v;
  }

  bool is_undefined() const { return kind == Kind::undefined; }
  bool is_number() const { return kind == Kind::integer || kind == Kind::floating || kind == Kind::boolean; }
  bool is_string() const { return kind == Kind::string; }
  bool is_list() const { return kind == Kind::list; }
  bool is_dict() const { return kind == Kind::dict; }
  double as_double() const { return kind == Kind::floating ? f : kind == Kind::boolean ? (b ? 1 : 0) : i; }

private:
  static Value with_kind(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }
};

// Insertion-ordered string-keyed map (Python dicts keep insertion order).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

const char* type_name(const Value& v);  // Python's: str, int, list, dict, NoneType, ...
bool truthy(const Value& v);
std::string to_str(const Value& v);  // str(v); undefined prints as ""
std::string repr(const Value& v);
bool equals(const Value& a, const Value& b);
// -1, 0, 1 as Python's < / == / >; throws TemplateError for unorderable types.
int compare(const Value& a, const Value& b);
// a <op> b for + - * / // % ** with Python's rules (str/list + and *, str % args). Undefined
// operands throw the UndefinedError of Jinja2.
Value arithmetic(const std::string& op, const Value& a, const Value& b);
// printf-style `fmt % args` (%s %r %d %i %f %x %%, width and precision), args a tuple or one value.
std::string percent_format(const std::string& fmt, const Value& args);

// Elements of an iterable: a list's items, a dict's keys, a string's characters; undefined is
// empty. Throws TemplateError for anything else.
List iterate(const Value& v);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as Python writes it.
struct JsonStyle {
  std::optional<std::string> indent;  // nullopt: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool ensure_ascii = false;
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonStyle& style);

// From nlohmann::json or nlohmann::ordered_json (keys keep the container's order).
template <class Json>
Value from_json(const Json& j) {
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value::boolean(j.template get<bool>());
  if (j.is_number_unsigned()) {
    auto u = j.template get<uint64_t>();
    if (u <= static_cast<uint64_t>(INT64_MAX)) return Value::integer(static_cast<int64_t>(u));
    return Value::floating(static_cast<double>(u));
  }
  if (j.is_number_integer()) return Value::integer(j.template get<int64_t>());
  if (j.is_number_float()) return Value::floating(j.template get<double>());
  if (j.is_string()) return Value::string(j.template get<std::string>());
  if (j.is_array()) {
    List items;
    items.reserve(j.size());
    for (const auto& e : j) items.push_back(from_json(e));
    return Value::make_list(std::move(items));
  }
  if (j.is_object()) {
    Value d = Value::make_dict();
    for (auto it = j.begin(); it != j.end(); ++it)
      d.dict->items.emplace_back(it.key(), from_json(it.value()));
    return d;
  }
  return Value::undefined();  // binary values: not produced by JSON text
}

}  // namespace mamba::tmpl
