// Attribute and item lookup, methods of str/dict/list, and the global functions (see builtins.h).
#include <algorithm>
#include <ctime>
#include <set>

#include "template/builtins.h"
#include "template/text.h"

namespace mamba::tmpl {

void fail_undefined(const Value& v) {
  throw TemplateError(v.s.empty() ? "value is undefined" : v.s);
}

namespace {

std::string object_name(const Value& v) {
  return std::string("'") + type_name(v) + " object'";
}

const std::string* opt_string(const CallArgs& a, size_t k, const char* method) {
  if (a.pos.size() <= k || a.pos[k].kind == Kind::none) return nullptr;
  if (!a.pos[k].is_string()) throw TemplateError(std::string(method) + " arg must be None or str");
  return &a.pos[k].s;
}

int64_t opt_int(const CallArgs& a, size_t k, int64_t fallback) {
  if (a.pos.size() <= k) return fallback;
  if (a.pos[k].kind != Kind::integer && a.pos[k].kind != Kind::boolean)
    throw TemplateError("an integer is required");
  return a.pos[k].kind == Kind::boolean ? a.pos[k].b : a.pos[k].i;
}

const std::string& req_string(const CallArgs& a, size_t k, const char* method) {
  if (a.pos.size() <= k || !a.pos[k].is_string())
    throw TemplateError(std::string(method) + "() expects a string argument");
  return a.pos[k].s;
}

Value string_list(std::vector<std::string> parts) {
  List out;
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return Value::make_list(std::move(out));
}

bool affix_match(const std::string& s, const Value& arg, bool prefix) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) throw TemplateError("startswith/endswith first arg must be str or a tuple of str");
    if (a.s.size() > s.size()) return false;
    return prefix ? s.compare(0, a.s.size(), a.s) == 0
                  : s.compare(s.size() - a.s.size(), a.s.size(), a.s) == 0;
  };
  if (arg.is_list()) return std::any_of(arg.list->begin(), arg.list->end(), one);
  return one(arg);
}

// "{} {0} {name}".format(...): replacement fields without format specs or conversions.
std::string str_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    char c = fmt[k];
    if ((c == '{' || c == '}') && k + 1 < fmt.size() && fmt[k + 1] == c) {
      out += c;
      ++k;
      continue;
    }
    if (c == '}') throw TemplateError("Single '}' encountered in format string");
    if (c != '{') {
      out += c;
      continue;
    }
    size_t close = fmt.find('}', k);
    if (close == std::string::npos) throw TemplateError("Single '{' encountered in format string");
    std::string field = fmt.substr(k + 1, close - k - 1);
    field = field.substr(0, field.find_first_of(":!"));
    const Value* v = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), ::isdigit)) {
      size_t index = field.empty() ? auto_index++ : std::stoul(field);
      if (index < a.pos.size()) v = &a.pos[index];
    } else {
      for (const auto& [name, x] : a.kw)
        if (name == field) v = &x;
    }
    if (!v) throw TemplateError("format: no argument for field '" + field + "'");
    out += to_str(*v);
    k = close;
  }
  return out;
}

Value str_method(const std::string& s, const std::string& name, const CallArgs& a) {
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return Value::string(py_strip(s, opt_string(a, 0, name.c_str()), name != "rstrip", name != "lstrip"));
  if (name == "split") return string_list(py_split(s, opt_string(a, 0, "split"), opt_int(a, 1, -1)));
  if (name == "rsplit") {
    const std::string* sep = opt_string(a, 0, "rsplit");
    std::u32string cps = utf8_decode(s);
    std::reverse(cps.begin(), cps.end());
    std::string rsep;
    if (sep) {
      std::u32string sep_cps = utf8_decode(*sep);
      std::reverse(sep_cps.begin(), sep_cps.end());
      rsep = utf8_encode(sep_cps);
    }
    auto parts = py_split(utf8_encode(cps), sep ? &rsep : nullptr, opt_int(a, 1, -1));
    std::reverse(parts.begin(), parts.end());
    for (auto& p : parts) {
      std::u32string q = utf8_decode(p);
      std::reverse(q.begin(), q.end());
      p = utf8_encode(q);
    }
    return string_list(std::move(parts));
  }
  if (name == "splitlines") {
    std::vector<std::string> lines;
    std::u32string cps = utf8_decode(s), line;
    for (size_t k = 0; k < cps.size(); ++k) {
      char32_t c = cps[k];
      bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
                 c == 0x2028 || c == 0x2029;
      if (!brk) {
        line += c;
        continue;
      }
      if (c == '\r' && k + 1 < cps.size() && cps[k + 1] == '\n') ++k;
      lines.push_back(utf8_encode(line));
      line.clear();
    }
    if (!line.empty()) lines.push_back(utf8_encode(line));
    return string_list(std::move(lines));
  }
  if (name == "startswith" || name == "endswith") {
    if (a.pos.empty()) throw TemplateError(name + "() takes at least 1 argument");
    return Value::boolean(affix_match(s, a.pos[0], name == "startswith"));
  }
  if (name == "upper") return Value::string(py_upper(s));
  if (name == "lower") return Value::string(py_lower(s));
  if (name == "title") return Value::string(py_title(s));
  if (name == "capitalize") return Value::string(py_capitalize(s));
  if (name == "replace")
    return Value::string(
        py_replace(s, req_string(a, 0, "replace"), req_string(a, 1, "replace"), opt_int(a, 2, -1)));
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    const std::string& sub = req_string(a, 0, name.c_str());
    size_t at = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
    if (at == std::string::npos) {
      if (name.find("index") != std::string::npos) throw TemplateError("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, at))));
  }
  if (name == "count") {
    const std::string& sub = req_string(a, 0, "count");
    if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_length(s)) + 1);
    int64_t n = 0;
    for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
    return Value::integer(n);
  }
  if (name == "join") {
    if (a.pos.empty()) throw TemplateError("join() takes exactly one argument");
    std::string out;
    List items = iterate(a.pos[0]);
    for (size_t k = 0; k < items.size(); ++k) {
      if (!items[k].is_string())
        throw TemplateError("sequence item " + std::to_string(k) + ": expected str instance, " +
                            type_name(items[k]) + " found");
      out += (k ? s : "") + items[k].s;
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(str_format(s, a));
  if (name == "removeprefix" || name == "removesuffix") {
    const std::string& x = req_string(a, 0, name.c_str());
    bool prefix = name == "removeprefix";
    if (!affix_match(s, Value::string(x), prefix)) return Value::string(s);
    return Value::string(prefix ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
  }
  std::u32string cps = utf8_decode(s);
  auto all = [&](auto pred) {
    return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), pred));
  };
  if (name == "isdigit") return all([](char32_t c) { return c >= '0' && c <= '9'; });
  if (name == "isspace") return all(is_py_space);
  if (name == "isalpha")
    return all([](char32_t c) { return c >= 0x80 ? is_cased(c) : std::isalpha(int(c)) != 0; });
  if (name == "isalnum")
    return all([](char32_t c) { return c >= 0x80 ? is_cased(c) : std::isalnum(int(c)) != 0; });
  if (name == "isupper" || name == "islower") {
    bool upper = name == "isupper", any_cased = false;
    for (char32_t c : cps) {
      if (!is_cased(c)) continue;
      any_cased = true;
      if ((upper ? to_upper_cp(c) : to_lower_cp(c)) != c) return Value::boolean(false);
    }
    return Value::boolean(any_cased);
  }
  throw TemplateError("'str' object has no attribute '" + name + "'");
}

const std::set<std::string>& str_methods() {
  static const std::set<std::string> names = {
      "strip",        "lstrip",  "rstrip",  "split",   "rsplit",     "splitlines", "startswith",
      "endswith",     "upper",   "lower",   "title",   "capitalize", "replace",    "find",
      "rfind",        "index",   "rindex",  "count",   "join",       "format",     "removeprefix",
      "removesuffix", "isdigit", "isspace", "isalpha", "isalnum",    "isupper",    "islower"};
  return names;
}

Value dict_method(const Value& d, const std::string& name, const CallArgs& a) {
  if (name == "get") {
    if (a.pos.empty()) throw TemplateError("get expected at least 1 argument, got 0");
    const Value* v = a.pos[0].is_string() ? d.dict->find(a.pos[0].s) : nullptr;
    if (v) return *v;
    return a.pos.size() > 1 ? a.pos[1] : Value::none();
  }
  List out;
  for (const auto& [k, v] : d.dict->items) {
    if (name == "keys")
      out.push_back(Value::string(k));
    else if (name == "values")
      out.push_back(v);
    else
      out.push_back(Value::make_list({Value::string(k), v}, true));
  }
  return Value::make_list(std::move(out));
}

Value bound(Value obj, std::string name) {
  return Value::function([obj = std::move(obj), name = std::move(name)](CallArgs& args) -> Value {
    if (obj.is_string()) return str_method(obj.s, name, args);
    if (obj.is_dict()) return dict_method(obj, name, args);
    // Lists: HF renders in an ImmutableSandboxedEnvironment, where mutating methods fail.
    throw TemplateError("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe");
  });
}

}  // namespace

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Kind::undefined:
      fail_undefined(obj);
    case Kind::string:
      if (str_methods().count(name)) return bound(obj, name);
      break;
    case Kind::dict: {
      if (name == "items" || name == "keys" || name == "values" || name == "get") return bound(obj, name);
      if (const Value* v = obj.dict->find(name)) return *v;
      break;
    }
    case Kind::ns:
      if (const Value* v = obj.dict->find(name)) return *v;
      break;
    case Kind::list:
      if (name == "append" || name == "extend" || name == "pop" || name == "insert" || name == "remove" ||
          name == "clear" || name == "sort" || name == "reverse")
        return bound(obj, name);
      break;
    default:
      break;
  }
  return Value::undefined(object_name(obj) + " has no attribute '" + name + "'");
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  bool int_key = key.kind == Kind::integer || key.kind == Kind::boolean;
  if ((obj.is_list() || obj.is_string()) && int_key) {
    int64_t index = key.kind == Kind::boolean ? key.b : key.i;
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.list->size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) return (*obj.list)[index];
    } else {
      std::u32string cps = utf8_decode(obj.s);
      int64_t n = static_cast<int64_t>(cps.size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) return Value::string(utf8_encode(std::u32string_view(&cps[index], 1)));
    }
    return Value::undefined(object_name(obj) + " has no element " + std::to_string(key.i));
  }
  if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.dict->find(key.s)) return *v;
  }
  if (key.is_string()) return get_attr(obj, key.s);
  return Value::undefined(object_name(obj) + " has no element " + repr(key));
}

Value global_function(const std::string& name) {
  if (name == "range") {
    return Value::function([](CallArgs& a) {
      if (a.pos.empty() || a.pos.size() > 3) throw TemplateError("range expected 1 to 3 arguments");
      for (const auto& v : a.pos)
        if (v.kind != Kind::integer && v.kind != Kind::boolean)
          throw TemplateError(std::string("'") + type_name(v) +
                              "' object cannot be interpreted as an integer");
      int64_t start = 0, stop = 0, step = 1;
      if (a.pos.size() == 1)
        stop = a.pos[0].i;
      else
        start = a.pos[0].i, stop = a.pos[1].i;
      if (a.pos.size() == 3) step = a.pos[2].i;
      if (step == 0) throw TemplateError("range() arg 3 must not be zero");
      List out;
      for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        if (out.size() >= 100000)
          throw TemplateError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        out.push_back(Value::integer(k));
      }
      return Value::make_list(std::move(out));
    });
  }
  if (name == "namespace" || name == "dict") {
    bool ns = name == "namespace";
    return Value::function([ns](CallArgs& a) {
      Value out = ns ? Value::make_namespace() : Value::make_dict();
      for (const auto& p : a.pos) {
        if (p.is_dict()) {
          for (const auto& [k, v] : p.dict->items) out.dict->set(k, v);
        } else {
          for (const auto& pair : iterate(p)) {
            if (!pair.is_list() || pair.list->size() != 2 || !(*pair.list)[0].is_string())
              throw TemplateError("dictionary update sequence element has wrong form");
            out.dict->set((*pair.list)[0].s, (*pair.list)[1]);
          }
        }
      }
      for (const auto& [k, v] : a.kw) out.dict->set(k, v);
      return out;
    });
  }
  if (name == "raise_exception") {
    return Value::function([](CallArgs& a) -> Value {
      throw RaisedError(a.pos.empty() ? std::string("raise_exception") : to_str(a.pos[0]));
    });
  }
  if (name == "strftime_now") {
    return Value::function([](CallArgs& a) {
      if (a.pos.empty() || !a.pos[0].is_string()) throw TemplateError("strftime_now expects a format string");
      std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char buf[512];
      size_t n = std::strftime(buf, sizeof(buf), a.pos[0].s.c_str(), &local);
      return Value::string(std::string(buf, n));
    });
  }
  return Value::undefined("'" + name + "' is undefined");
}

}  // namespace mamba::tmpl
