// Jinja2's builtin filters and tests (jinja2/filters.py, jinja2/tests.py) with HF's tojson.
#include "template/builtins.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "template/text.h"

namespace mamba::tmpl {

namespace {

using Param = std::pair<const char*, Value>;

// Binds positional and keyword arguments to named parameters, filling defaults.
std::vector<Value> bind(const std::string& fn, CallArgs& args, std::initializer_list<Param> params) {
  std::vector<Value> out;
  std::vector<const char*> names;
  for (const auto& [n, v] : params) {
    names.push_back(n);
    out.push_back(v);
  }
  if (args.pos.size() > out.size())
    throw TemplateError(fn + "() takes at most " + std::to_string(out.size()) + " argument(s)");
  for (size_t k = 0; k < args.pos.size(); ++k) out[k] = args.pos[k];
  for (const auto& [key, v] : args.kw) {
    auto it = std::find_if(names.begin(), names.end(), [&k = key](const char* n) { return k == n; });
    if (it == names.end()) throw TemplateError(fn + "() got an unexpected keyword argument '" + key + "'");
    out[it - names.begin()] = v;
  }
  return out;
}

CallArgs rest_args(const CallArgs& args, size_t skip) {
  CallArgs rest;
  if (args.pos.size() > skip) rest.pos.assign(args.pos.begin() + skip, args.pos.end());
  rest.kw = args.kw;
  return rest;
}

int64_t as_int(const Value& v, const char* what) {
  if (v.kind == Kind::integer) return v.i;
  if (v.kind == Kind::boolean) return v.b;
  throw TemplateError(std::string(what) + " must be an integer, not " + type_name(v));
}

// Attribute path "a.b.0" as Jinja2's make_attrgetter (item lookup, integer parts as indexes).
Value attr_path(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return get_item(item, attribute);
  Value cur = item;
  size_t start = 0;
  const std::string& path = attribute.s;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) && part.size() < 18;
    cur = get_item(cur, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value make_string_list(const List& items) {
  return Value::make_list(items);
}

// select/reject/selectattr/rejectattr (jinja2.filters.select_or_reject).
Value select_or_reject(const Value& seq, CallArgs& args, bool select, bool by_attr) {
  size_t skip = 0;
  Value attribute;
  if (by_attr) {
    if (args.pos.empty()) throw TemplateError("selectattr/rejectattr: missing attribute");
    attribute = args.pos[0];
    skip = 1;
  }
  std::string test;
  if (args.pos.size() > skip) {
    if (!args.pos[skip].is_string()) throw TemplateError("select: the test name must be a string");
    test = args.pos[skip].s;
    if (!has_test(test)) throw TemplateError("No test named '" + test + "'.");
  }
  CallArgs test_args = rest_args(args, skip + 1);
  List out;
  if (!truthy(seq)) return Value::make_list();  // Jinja2 iterates only truthy values
  for (const Value& item : iterate(seq)) {
    Value v = by_attr ? attr_path(item, attribute) : item;
    bool ok = test.empty() ? truthy(v) : apply_test(test, v, test_args);
    if (ok == select) out.push_back(item);
  }
  return make_string_list(out);
}

Value do_map(const Value& seq, CallArgs& args) {
  List out;
  if (!truthy(seq)) return Value::make_list();  // Jinja2 iterates only truthy values
  const Value* attribute = nullptr;
  Value fallback;
  for (const auto& [k, v] : args.kw) {
    if (k == "attribute")
      attribute = &v;
    else if (k == "default")
      fallback = v;
  }
  if (attribute) {
    for (const Value& item : iterate(seq)) {
      Value v = attr_path(item, *attribute);
      out.push_back(v.is_undefined() && !fallback.is_undefined() ? fallback : v);
    }
    return Value::make_list(std::move(out));
  }
  if (args.pos.empty() || !args.pos[0].is_string())
    throw TemplateError("map: expected a filter name or attribute=");
  std::string filter = args.pos[0].s;
  if (!has_filter(filter)) throw TemplateError("No filter named '" + filter + "'.");
  CallArgs filter_args = rest_args(args, 1);
  for (const Value& item : iterate(seq)) out.push_back(apply_filter(filter, item, filter_args));
  return Value::make_list(std::move(out));
}

Value do_tojson(const Value& v, CallArgs& args) {
  auto p = bind("tojson", args,
                {{"ensure_ascii", Value::boolean(false)},
                 {"indent", Value::none()},
                 {"separators", Value::none()},
                 {"sort_keys", Value::boolean(false)}});
  JsonStyle style;
  style.ensure_ascii = truthy(p[0]);
  if (p[1].is_string())
    style.indent = p[1].s;
  else if (p[1].kind != Kind::none)
    style.indent = std::string(std::max<int64_t>(0, as_int(p[1], "indent")), ' ');
  if (style.indent) style.item_separator = ",";
  if (p[2].kind != Kind::none) {
    if (!p[2].is_list() || p[2].list->size() != 2 || !(*p[2].list)[0].is_string() ||
        !(*p[2].list)[1].is_string())
      throw TemplateError("tojson: separators must be a pair of strings");
    style.item_separator = (*p[2].list)[0].s;
    style.key_separator = (*p[2].list)[1].s;
  }
  style.sort_keys = truthy(p[3]);
  return Value::string(to_json(v, style));
}

Value do_length(const Value& v) {
  switch (v.kind) {
    case Kind::undefined:
      return Value::integer(0);
    case Kind::string:
      return Value::integer(static_cast<int64_t>(utf8_length(v.s)));
    case Kind::list:
      return Value::integer(static_cast<int64_t>(v.list->size()));
    case Kind::dict:
    case Kind::ns:
      return Value::integer(static_cast<int64_t>(v.dict->items.size()));
    default:
      throw TemplateError(std::string("object of type '") + type_name(v) + "' has no len()");
  }
}

// int("3.7") fails in Python, so Jinja2 tries float next; both failing gives the default.
Value do_int(const Value& v, CallArgs& args) {
  auto p = bind("int", args, {{"default", Value::integer(0)}, {"base", Value::integer(10)}});
  if (v.is_undefined()) fail_undefined(v);
  if (v.kind == Kind::integer) return v;
  if (v.kind == Kind::boolean) return Value::integer(v.b);
  if (v.kind == Kind::floating) return std::isfinite(v.f) ? Value::integer(static_cast<int64_t>(v.f)) : p[0];
  if (!v.is_string()) return p[0];
  std::string s = py_strip(v.s, nullptr, true, true);
  std::string digits;
  for (char c : s)
    if (c != '_') digits += c;
  int base = static_cast<int>(as_int(p[1], "base"));
  if (!digits.empty() && base >= 2 && base <= 36) {
    char* end = nullptr;
    errno = 0;
    long long x = std::strtoll(digits.c_str(), &end, base);
    if (end && *end == 0 && errno == 0) return Value::integer(x);
  }
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && end && *end == 0 && std::isfinite(d)) return Value::integer(static_cast<int64_t>(d));
  return p[0];
}

Value do_float(const Value& v, CallArgs& args) {
  auto p = bind("float", args, {{"default", Value::floating(0.0)}});
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value::floating(v.as_double());
  if (!v.is_string()) return p[0];
  std::string s = py_strip(v.s, nullptr, true, true);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && end && *end == 0) return Value::floating(d);
  return p[0];
}

// Sort key of sort/min/max/unique/dictsort: strings lower-cased unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  return v.is_string() && !case_sensitive ? Value::string(py_lower(v.s)) : v;
}

Value do_sort(const Value& seq, CallArgs& args) {
  auto p = bind("sort", args,
                {{"reverse", Value::boolean(false)},
                 {"case_sensitive", Value::boolean(false)},
                 {"attribute", Value::none()}});
  List items = iterate(seq);
  bool cs = truthy(p[1]);
  auto key = [&](const Value& v) { return sort_key(p[2].kind == Kind::none ? v : attr_path(v, p[2]), cs); };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return truthy(p[0]) ? compare(key(b), key(a)) < 0 : compare(key(a), key(b)) < 0;
  });
  return Value::make_list(std::move(items));
}

Value do_min_max(const Value& seq, CallArgs& args, bool is_max) {
  auto p = bind(is_max ? "max" : "min", args,
                {{"case_sensitive", Value::boolean(false)}, {"attribute", Value::none()}});
  List items = iterate(seq);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  auto key = [&](const Value& v) {
    return sort_key(p[1].kind == Kind::none ? v : attr_path(v, p[1]), truthy(p[0]));
  };
  size_t best = 0;
  for (size_t k = 1; k < items.size(); ++k) {
    int c = compare(key(items[k]), key(items[best]));
    if (is_max ? c > 0 : c < 0) best = k;
  }
  return items[best];
}

Value do_indent(const Value& v, CallArgs& args) {
  auto p = bind(
      "indent", args,
      {{"width", Value::integer(4)}, {"first", Value::boolean(false)}, {"blank", Value::boolean(false)}});
  std::string indention =
      p[0].is_string() ? p[0].s : std::string(std::clamp<int64_t>(as_int(p[0], "width"), 0, 4096), ' ');
  CallArgs none;
  Value lines_v = get_attr(Value::string(to_str(v) + "\n"), "splitlines");
  List lines = *(*lines_v.fn)(none).list;
  std::string rv;
  if (truthy(p[2])) {
    for (size_t k = 0; k < lines.size(); ++k) rv += (k ? "\n" + indention : "") + lines[k].s;
  } else {
    rv = lines.empty() ? "" : lines[0].s;
    for (size_t k = 1; k < lines.size(); ++k) rv += "\n" + (lines[k].s.empty() ? "" : indention) + lines[k].s;
  }
  if (truthy(p[1])) rv = indention + rv;
  return Value::string(rv);
}

// Jinja2's title filter capitalizes after '-', whitespace and opening brackets (not str.title).
std::string jinja_title(const std::string& s) {
  std::u32string cps = utf8_decode(s);
  for (size_t k = 0; k < cps.size(); ++k) {
    bool start = k == 0 || is_py_space(cps[k - 1]) || cps[k - 1] == '-' || cps[k - 1] == '(' ||
                 cps[k - 1] == '{' || cps[k - 1] == '[' || cps[k - 1] == '<';
    cps[k] = start ? to_upper_cp(cps[k]) : to_lower_cp(cps[k]);
  }
  return utf8_encode(cps);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

using FilterFn = Value (*)(const Value&, CallArgs&);

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> table = {
      {"trim",
       [](const Value& v, CallArgs& a) {
         auto p = bind("trim", a, {{"chars", Value::none()}});
         std::string chars = p[0].is_string() ? p[0].s : "";
         return Value::string(py_strip(to_str(v), p[0].is_string() ? &chars : nullptr, true, true));
       }},
      {"tojson", do_tojson},
      {"length", [](const Value& v, CallArgs&) { return do_length(v); }},
      {"count", [](const Value& v, CallArgs&) { return do_length(v); }},
      {"upper", [](const Value& v, CallArgs&) { return Value::string(py_upper(to_str(v))); }},
      {"lower", [](const Value& v, CallArgs&) { return Value::string(py_lower(to_str(v))); }},
      {"capitalize", [](const Value& v, CallArgs&) { return Value::string(py_capitalize(to_str(v))); }},
      {"title", [](const Value& v, CallArgs&) { return Value::string(jinja_title(to_str(v))); }},
      {"replace",
       [](const Value& v, CallArgs& a) {
         auto p = bind("replace", a,
                       {{"old", Value::string("")}, {"new", Value::string("")}, {"count", Value::none()}});
         int64_t count = p[2].kind == Kind::none ? -1 : as_int(p[2], "count");
         return Value::string(py_replace(to_str(v), to_str(p[0]), to_str(p[1]), count));
       }},
      {"default",
       [](const Value& v, CallArgs& a) {
         auto p =
             bind("default", a, {{"default_value", Value::string("")}, {"boolean", Value::boolean(false)}});
         bool use_default = v.is_undefined() || (truthy(p[1]) && !truthy(v));
         return use_default ? p[0] : v;
       }},
      {"join",
       [](const Value& v, CallArgs& a) {
         auto p = bind("join", a, {{"d", Value::string("")}, {"attribute", Value::none()}});
         std::string out, sep = to_str(p[0]);
         bool first = true;
         for (const Value& item : iterate(v)) {
           out += (first ? "" : sep) + to_str(p[1].kind == Kind::none ? item : attr_path(item, p[1]));
           first = false;
         }
         return Value::string(std::move(out));
       }},
      {"first",
       [](const Value& v, CallArgs&) {
         List items = iterate(v);
         return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
       }},
      {"last",
       [](const Value& v, CallArgs&) {
         List items = iterate(v);
         return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
       }},
      {"list", [](const Value& v, CallArgs&) { return Value::make_list(iterate(v)); }},
      {"string", [](const Value& v, CallArgs&) { return Value::string(to_str(v)); }},
      {"int", do_int},
      {"float", do_float},
      {"items",
       [](const Value& v, CallArgs&) {
         if (v.is_undefined()) return Value::make_list();
         if (!v.is_dict()) throw TemplateError("Can only get item pairs from a mapping.");
         List out;
         for (const auto& [k, x] : v.dict->items)
           out.push_back(Value::make_list({Value::string(k), x}, true));
         return Value::make_list(std::move(out));
       }},
      {"selectattr", [](const Value& v, CallArgs& a) { return select_or_reject(v, a, true, true); }},
      {"rejectattr", [](const Value& v, CallArgs& a) { return select_or_reject(v, a, false, true); }},
      {"select", [](const Value& v, CallArgs& a) { return select_or_reject(v, a, true, false); }},
      {"reject", [](const Value& v, CallArgs& a) { return select_or_reject(v, a, false, false); }},
      {"map", do_map},
      {"safe", [](const Value& v, CallArgs&) { return v; }},
      {"escape", [](const Value& v, CallArgs&) { return Value::string(html_escape(to_str(v))); }},
      {"e", [](const Value& v, CallArgs&) { return Value::string(html_escape(to_str(v))); }},
      {"abs",
       [](const Value& v, CallArgs&) {
         if (v.kind == Kind::floating) return Value::floating(std::fabs(v.f));
         if (v.kind == Kind::integer || v.kind == Kind::boolean) {
           int64_t x = v.kind == Kind::boolean ? v.b : v.i;
           return x == INT64_MIN ? Value::floating(-static_cast<double>(x)) : Value::integer(x < 0 ? -x : x);
         }
         throw TemplateError(std::string("bad operand type for abs(): '") + type_name(v) + "'");
       }},
      {"round",
       [](const Value& v, CallArgs& a) {
         auto p = bind("round", a, {{"precision", Value::integer(0)}, {"method", Value::string("common")}});
         if (!v.is_number()) throw TemplateError("round: a number is required");
         double scale = std::pow(10.0, static_cast<double>(as_int(p[0], "precision")));
         double x = v.as_double() * scale;
         std::string method = to_str(p[1]);
         x = method == "floor" ? std::floor(x) : method == "ceil" ? std::ceil(x) : std::nearbyint(x);
         if (method == "common" && v.kind != Kind::floating && p[0].i == 0)
           return Value::integer(static_cast<int64_t>(x));
         return Value::floating(x / scale);
       }},
      {"sum",
       [](const Value& v, CallArgs& a) {
         auto p = bind("sum", a, {{"attribute", Value::none()}, {"start", Value::integer(0)}});
         Value total = p[1];
         for (const Value& item : iterate(v))
           total = arithmetic("+", total, p[0].kind == Kind::none ? item : attr_path(item, p[0]));
         return total;
       }},
      {"min", [](const Value& v, CallArgs& a) { return do_min_max(v, a, false); }},
      {"max", [](const Value& v, CallArgs& a) { return do_min_max(v, a, true); }},
      {"sort", do_sort},
      {"unique",
       [](const Value& v, CallArgs& a) {
         auto p =
             bind("unique", a, {{"case_sensitive", Value::boolean(false)}, {"attribute", Value::none()}});
         List out, seen;
         for (const Value& item : iterate(v)) {
           Value key = sort_key(p[1].kind == Kind::none ? item : attr_path(item, p[1]), truthy(p[0]));
           if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
             seen.push_back(key);
             out.push_back(item);
           }
         }
         return Value::make_list(std::move(out));
       }},
      {"reverse",
       [](const Value& v, CallArgs&) {
         if (v.is_string()) {
           std::u32string cps = utf8_decode(v.s);
           std::reverse(cps.begin(), cps.end());
           return Value::string(utf8_encode(cps));
         }
         List items = iterate(v);
         std::reverse(items.begin(), items.end());
         return Value::make_list(std::move(items));
       }},
      {"dictsort",
       [](const Value& v, CallArgs& a) {
         auto p = bind("dictsort", a,
                       {{"case_sensitive", Value::boolean(false)},
                        {"by", Value::string("key")},
                        {"reverse", Value::boolean(false)}});
         if (!v.is_dict()) throw TemplateError("dictsort: a mapping is required");
         List items;
         for (const auto& [k, x] : v.dict->items)
           items.push_back(Value::make_list({Value::string(k), x}, true));
         size_t pos = to_str(p[1]) == "value" ? 1 : 0;
         std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
           int c = compare(sort_key((*x.list)[pos], truthy(p[0])), sort_key((*y.list)[pos], truthy(p[0])));
           return truthy(p[2]) ? c > 0 : c < 0;
         });
         return Value::make_list(std::move(items));
       }},
      {"indent", do_indent},
      {"center",
       [](const Value& v, CallArgs& a) {
         auto p = bind("center", a, {{"width", Value::integer(80)}});
         std::string s = to_str(v);
         int64_t width = std::min<int64_t>(as_int(p[0], "width"), 1 << 20), n = utf8_length(s);
         if (width <= n) return Value::string(s);
         int64_t marg = width - n, left = marg / 2 + (marg & width & 1);
         return Value::string(std::string(left, ' ') + s + std::string(marg - left, ' '));
       }},
      {"wordcount",
       [](const Value& v, CallArgs&) {
         int64_t words = 0;
         bool in_word = false;
         for (char32_t c : utf8_decode(to_str(v))) {
           bool w = c == '_' || (c < 0x80 ? std::isalnum(int(c)) != 0 : !is_py_space(c));
           if (w && !in_word) ++words;
           in_word = w;
         }
         return Value::integer(words);
       }},
      {"format",
       [](const Value& v, CallArgs& a) {
         return Value::string(percent_format(to_str(v), Value::make_list(a.pos, true)));
       }},
      {"attr",
       [](const Value& v, CallArgs& a) {
         // Jinja2's attr looks up attributes only: a dict's keys are not attributes.
         auto p = bind("attr", a, {{"name", Value::string("")}});
         if (v.is_dict() && !v.dict->find(to_str(p[0]))) return get_attr(v, to_str(p[0]));
         if (v.is_dict()) return Value::undefined("'dict object' has no attribute '" + to_str(p[0]) + "'");
         return get_attr(v, to_str(p[0]));
       }},
  };
  return table;
}

using TestFn = bool (*)(const Value&, CallArgs&);

// str.islower() / str.isupper(): some cased character, and all cased characters in that case.
bool cased_as(const std::string& s, bool upper) {
  bool any_cased = false;
  for (char32_t c : utf8_decode(s)) {
    if (!is_cased(c)) continue;
    any_cased = true;
    if ((upper ? to_upper_cp(c) : to_lower_cp(c)) != c) return false;
  }
  return any_cased;
}

const Value& arg0(const CallArgs& a, const char* test) {
  if (a.pos.empty()) throw TemplateError(std::string("test '") + test + "' needs an argument");
  return a.pos[0];
}

bool contains(const Value& container, const Value& item);

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> table = {
      {"defined", [](const Value& v, CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, CallArgs&) { return v.is_undefined(); }},
      {"none", [](const Value& v, CallArgs&) { return v.kind == Kind::none; }},
      {"boolean", [](const Value& v, CallArgs&) { return v.kind == Kind::boolean; }},
      {"true", [](const Value& v, CallArgs&) { return v.kind == Kind::boolean && v.b; }},
      {"false", [](const Value& v, CallArgs&) { return v.kind == Kind::boolean && !v.b; }},
      {"integer", [](const Value& v, CallArgs&) { return v.kind == Kind::integer; }},
      {"float", [](const Value& v, CallArgs&) { return v.kind == Kind::floating; }},
      {"number", [](const Value& v, CallArgs&) { return v.is_number(); }},
      {"string", [](const Value& v, CallArgs&) { return v.is_string(); }},
      {"mapping", [](const Value& v, CallArgs&) { return v.is_dict(); }},
      {"iterable", [](const Value& v,
                      CallArgs&) { return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict(); }},
      {"sequence", [](const Value& v,
                      CallArgs&) { return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict(); }},
      {"callable", [](const Value& v, CallArgs&) { return v.kind == Kind::function; }},
      {"escaped", [](const Value&, CallArgs&) { return false; }},
      {"lower", [](const Value& v, CallArgs&) { return cased_as(to_str(v), false); }},
      {"upper", [](const Value& v, CallArgs&) { return cased_as(to_str(v), true); }},
      {"odd", [](const Value& v,
                 CallArgs&) { return equals(arithmetic("%", v, Value::integer(2)), Value::integer(1)); }},
      {"even", [](const Value& v,
                  CallArgs&) { return equals(arithmetic("%", v, Value::integer(2)), Value::integer(0)); }},
      {"divisibleby",
       [](const Value& v, CallArgs& a) {
         int64_t d = as_int(arg0(a, "divisibleby"), "divisibleby");
         if (d == 0) throw TemplateError("integer division or modulo by zero");
         return as_int(v, "divisibleby") % d == 0;
       }},
      {"sameas",
       [](const Value& v, CallArgs& a) {
         const Value& o = arg0(a, "sameas");
         if (v.kind != o.kind) return false;
         if (v.kind == Kind::none || v.kind == Kind::boolean || v.kind == Kind::integer) return equals(v, o);
         return v.list == o.list && v.dict == o.dict && v.fn == o.fn && v.is_list() == o.is_list() &&
                (v.is_list() || v.is_dict() || v.kind == Kind::ns || v.kind == Kind::function);
       }},
      {"eq", [](const Value& v, CallArgs& a) { return equals(v, arg0(a, "eq")); }},
      {"equalto", [](const Value& v, CallArgs& a) { return equals(v, arg0(a, "equalto")); }},
      {"==", [](const Value& v, CallArgs& a) { return equals(v, arg0(a, "==")); }},
      {"ne", [](const Value& v, CallArgs& a) { return !equals(v, arg0(a, "ne")); }},
      {"!=", [](const Value& v, CallArgs& a) { return !equals(v, arg0(a, "!=")); }},
      {"lt", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "lt")) < 0; }},
      {"lessthan", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "lessthan")) < 0; }},
      {"<", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "<")) < 0; }},
      {"le", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "le")) <= 0; }},
      {"<=", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "<=")) <= 0; }},
      {"gt", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "gt")) > 0; }},
      {"greaterthan", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "greaterthan")) > 0; }},
      {">", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, ">")) > 0; }},
      {"ge", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, "ge")) >= 0; }},
      {">=", [](const Value& v, CallArgs& a) { return compare(v, arg0(a, ">=")) >= 0; }},
      {"in", [](const Value& v, CallArgs& a) { return contains(arg0(a, "in"), v); }},
  };
  return table;
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Kind::undefined:
      return false;
    case Kind::string:
      if (!item.is_string())
        throw TemplateError(std::string("'in <string>' requires string as left operand, not ") +
                            type_name(item));
      return container.s.find(item.s) != std::string::npos;
    case Kind::list:
      return std::any_of(container.list->begin(), container.list->end(),
                         [&](const Value& x) { return equals(x, item); });
    case Kind::dict:
      return item.is_string() && container.dict->find(item.s) != nullptr;
    default:
      throw TemplateError(std::string("argument of type '") + type_name(container) + "' is not iterable");
  }
}

}  // namespace

bool has_filter(const std::string& name) {
  return filters().count(name) > 0 || name == "d";
}
bool has_test(const std::string& name) {
  return tests().count(name) > 0;
}

Value apply_filter(const std::string& name, const Value& self, CallArgs& args) {
  auto it = filters().find(name == "d" ? "default" : name);
  if (it == filters().end()) throw TemplateError("No filter named '" + name + "'.");
  return it->second(self, args);
}

bool apply_test(const std::string& name, const Value& self, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) throw TemplateError("No test named '" + name + "'.");
  return it->second(self, args);
}

bool value_contains(const Value& container, const Value& item) {
  return contains(container, item);
}

}  // namespace mamba::tmpl
