// Python semantics of template values (see value.h).
#include "template/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "template/text.h"

namespace mamba::tmpl {

Value Value::make_list(List items, bool is_tuple) {
  Value v = with_kind(Kind::list);
  v.list = std::make_shared<List>(std::move(items));
  v.tuple = is_tuple;
  return v;
}

Value Value::make_dict() {
  Value v = with_kind(Kind::dict);
  v.dict = std::make_shared<Dict>();
  return v;
}

Value Value::make_namespace() {
  Value v = with_kind(Kind::ns);
  v.dict = std::make_shared<Dict>();
  return v;
}

const Value* Dict::find(const std::string& key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

const char* type_name(const Value& v) {
  switch (v.kind) {
    case Kind::undefined:
      return "Undefined";
    case Kind::none:
      return "NoneType";
    case Kind::boolean:
      return "bool";
    case Kind::integer:
      return "int";
    case Kind::floating:
      return "float";
    case Kind::string:
      return "str";
    case Kind::list:
      return v.tuple ? "tuple" : "list";
    case Kind::dict:
      return "dict";
    case Kind::function:
      return "function";
    case Kind::ns:
      return "Namespace";
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::undefined:
    case Kind::none:
      return false;
    case Kind::boolean:
      return v.b;
    case Kind::integer:
      return v.i != 0;
    case Kind::floating:
      return v.f != 0;
    case Kind::string:
      return !v.s.empty();
    case Kind::list:
      return !v.list->empty();
    case Kind::dict:
      return !v.dict->items.empty();
    case Kind::function:
    case Kind::ns:
      return true;
  }
  return false;
}

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Kind::undefined:
      return "";
    case Kind::string:
      return v.s;
    default:
      return repr(v);
  }
}

std::string repr(const Value& v) {
  switch (v.kind) {
    case Kind::undefined:
      return "Undefined";
    case Kind::none:
      return "None";
    case Kind::boolean:
      return v.b ? "True" : "False";
    case Kind::integer:
      return std::to_string(v.i);
    case Kind::floating:
      return py_float_repr(v.f);
    case Kind::string:
      return py_str_repr(v.s);
    case Kind::list: {
      std::string out = v.tuple ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      if (v.tuple && v.list->size() == 1) out += ",";
      return out + (v.tuple ? ")" : "]");
    }
    case Kind::dict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : v.dict->items) {
        out += (first ? "" : ", ") + py_str_repr(k) + ": " + repr(x);
        first = false;
      }
      return out + "}";
    }
    case Kind::function:
      return "<function>";
    case Kind::ns:
      return "<Namespace>";
  }
  return "";
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::floating && b.kind != Kind::floating)
      return (a.kind == Kind::boolean ? a.b : a.i) == (b.kind == Kind::boolean ? b.b : b.i);
    return a.as_double() == b.as_double();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::undefined:
    case Kind::none:
      return true;
    case Kind::string:
      return a.s == b.s;
    case Kind::list:
      if (a.tuple != b.tuple || a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Kind::dict:
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, x] : a.dict->items) {
        const Value* y = b.dict->find(k);
        if (!y || !equals(x, *y)) return false;
      }
      return true;
    case Kind::function:
      return a.fn == b.fn;
    case Kind::ns:
      return a.dict == b.dict;
    default:
      return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::floating && b.kind != Kind::floating) {
      int64_t x = a.kind == Kind::boolean ? a.b : a.i, y = b.kind == Kind::boolean ? b.b : b.i;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.is_list() && b.is_list() && a.tuple == b.tuple) {
    size_t n = std::min(a.list->size(), b.list->size());
    for (size_t k = 0; k < n; ++k)
      if (!equals((*a.list)[k], (*b.list)[k])) return compare((*a.list)[k], (*b.list)[k]);
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  throw TemplateError(std::string("'<' not supported between instances of '") + type_name(a) + "' and '" +
                      type_name(b) + "'");
}

List iterate(const Value& v) {
  switch (v.kind) {
    case Kind::undefined:
      return {};
    case Kind::list:
      return *v.list;
    case Kind::dict: {
      List keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Kind::string: {
      List chars;
      for (char32_t c : utf8_decode(v.s))
        chars.push_back(Value::string(utf8_encode(std::u32string_view(&c, 1))));
      return chars;
    }
    default:
      throw TemplateError(std::string("'") + type_name(v) + "' object is not iterable");
  }
}

namespace {

void json_string(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  char buf[16];
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
          if (c >= 0x10000) {
            char32_t u = c - 0x10000;
            std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (u >> 10)),
                          static_cast<unsigned>(0xDC00 + (u & 0x3FF)));
          } else {
            std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          }
          out += buf;
        } else {
          out += utf8_encode(std::u32string_view(&c, 1));
        }
    }
  }
  out += '"';
}

void json_value(const Value& v, const JsonStyle& style, int depth, std::string& out) {
  if (depth > 512) throw TemplateError("tojson: nesting too deep");
  auto newline = [&](int level) {
    if (!style.indent) return;
    out += '\n';
    for (int k = 0; k < level; ++k) out += *style.indent;
  };
  switch (v.kind) {
    case Kind::none:
      out += "null";
      return;
    case Kind::boolean:
      out += v.b ? "true" : "false";
      return;
    case Kind::integer:
      out += std::to_string(v.i);
      return;
    case Kind::floating:
      if (std::isnan(v.f))
        out += "NaN";
      else if (std::isinf(v.f))
        out += v.f < 0 ? "-Infinity" : "Infinity";
      else
        out += py_float_repr(v.f);
      return;
    case Kind::string:
      json_string(v.s, style.ensure_ascii, out);
      return;
    case Kind::list: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += style.item_separator;
        newline(depth + 1);
        json_value((*v.list)[k], style, depth + 1, out);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Kind::dict: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.dict->items) items.push_back(&kv);
      if (style.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* x, auto* y) { return x->first < y->first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += style.item_separator;
        newline(depth + 1);
        json_string(items[k]->first, style.ensure_ascii, out);
        out += style.key_separator;
        json_value(items[k]->second, style, depth + 1, out);
      }
      newline(depth);
      out += '}';
      return;
    }
    default:
      throw TemplateError(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonStyle& style) {
  std::string out;
  json_value(v, style, 0, out);
  return out;
}

}  // namespace mamba::tmpl

namespace mamba::tmpl {

namespace {

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) throw TemplateError(a.s.empty() ? "value is undefined" : a.s);
  if (b.is_undefined()) throw TemplateError(b.s.empty() ? "value is undefined" : b.s);
  throw TemplateError("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" +
                      type_name(b) + "'");
}

bool is_int_like(const Value& v) {
  return v.kind == Kind::integer || v.kind == Kind::boolean;
}
int64_t int_of(const Value& v) {
  return v.kind == Kind::boolean ? v.b : v.i;
}

constexpr size_t kMaxRepeatBytes = size_t(1) << 28;

Value repeat(const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  size_t unit = seq.is_string() ? seq.s.size() : seq.list->size() * 64;
  if (unit && static_cast<size_t>(n) > kMaxRepeatBytes / unit)
    throw TemplateError("repetition result too large");
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.s;
    return Value::string(std::move(out));
  }
  List out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::make_list(std::move(out), seq.tuple);
}

Value int_or_float(int64_t x, int64_t y, char op) {
  int64_t r = 0;
  bool overflow = op == '+'   ? __builtin_add_overflow(x, y, &r)
                  : op == '-' ? __builtin_sub_overflow(x, y, &r)
                              : __builtin_mul_overflow(x, y, &r);
  if (!overflow) return Value::integer(r);
  double a = static_cast<double>(x), b = static_cast<double>(y);
  return Value::floating(op == '+' ? a + b : op == '-' ? a - b : a * b);
}

}  // namespace

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  bool numbers = a.is_number() && b.is_number();
  bool ints = is_int_like(a) && is_int_like(b);
  if (op == "+") {
    if (numbers)
      return ints ? int_or_float(int_of(a), int_of(b), '+') : Value::floating(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.is_list() && b.is_list() && a.tuple == b.tuple) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(out), a.tuple);
    }
  } else if (op == "-") {
    if (numbers)
      return ints ? int_or_float(int_of(a), int_of(b), '-') : Value::floating(a.as_double() - b.as_double());
  } else if (op == "*") {
    if (numbers)
      return ints ? int_or_float(int_of(a), int_of(b), '*') : Value::floating(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_list()) && is_int_like(b)) return repeat(a, int_of(b));
    if ((b.is_string() || b.is_list()) && is_int_like(a)) return repeat(b, int_of(a));
  } else if (op == "/") {
    if (numbers) {
      if (b.as_double() == 0) throw TemplateError("division by zero");
      return Value::floating(a.as_double() / b.as_double());
    }
  } else if (op == "//" || op == "%") {
    if (a.is_string() && op == "%") return Value::string(percent_format(a.s, b));
    if (numbers) {
      if (b.as_double() == 0)
        throw TemplateError(op == "//" ? "integer division or modulo by zero" : "modulo by zero");
      if (ints) {
        int64_t x = int_of(a), y = int_of(b);
        if (x == INT64_MIN && y == -1)
          return op == "//" ? Value::floating(-static_cast<double>(x)) : Value::integer(0);
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return Value::integer(op == "//" ? q : r);
      }
      double x = a.as_double(), y = b.as_double();
      double q = std::floor(x / y);
      if (op == "//") return Value::floating(q);
      double r = std::fmod(x, y);
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      return Value::floating(r);
    }
  } else if (op == "**") {
    if (numbers) {
      if (ints && int_of(b) >= 0) {
        int64_t base = int_of(a), e = int_of(b), r = 1;
        bool overflow = false;
        for (int64_t k = 0; k < e && !overflow; ++k) overflow = __builtin_mul_overflow(r, base, &r);
        if (!overflow) return Value::integer(r);
      }
      if (a.as_double() == 0 && b.as_double() < 0)
        throw TemplateError("0.0 cannot be raised to a negative power");
      return Value::floating(std::pow(a.as_double(), b.as_double()));
    }
  }
  unsupported(op, a, b);
}

std::string percent_format(const std::string& fmt, const Value& args) {
  List items = args.is_list() && args.tuple ? *args.list : List{args};
  size_t next = 0;
  std::string out;
  for (size_t k = 0; k < fmt.size(); ++k) {
    if (fmt[k] != '%') {
      out += fmt[k];
      continue;
    }
    size_t spec_start = k++;
    while (k < fmt.size() && std::string("-+ 0#").find(fmt[k]) != std::string::npos) ++k;
    while (k < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[k]))) ++k;
    if (k < fmt.size() && fmt[k] == '.') {
      ++k;
      while (k < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[k]))) ++k;
    }
    if (k >= fmt.size()) throw TemplateError("incomplete format");
    char conv = fmt[k];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (next >= items.size()) throw TemplateError("not enough arguments for format string");
    const Value& v = items[next++];
    std::string flags = fmt.substr(spec_start, k - spec_start);
    char buf[512];
    if (conv == 's' || conv == 'r') {
      std::string text = conv == 's' ? to_str(v) : repr(v);
      int width = 0;
      size_t d = 1;
      bool left = false;
      while (d < flags.size() && std::string("-+ 0#").find(flags[d]) != std::string::npos)
        left |= flags[d++] == '-';
      width = std::min(std::atoi(flags.c_str() + d), 4096);
      size_t len = utf8_length(text);
      std::string pad = static_cast<size_t>(width) > len ? std::string(width - len, ' ') : "";
      out += left ? text + pad : pad + text;
    } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
      if (!v.is_number())
        throw TemplateError(std::string("%") + conv + " format: a real number is required, not " +
                            type_name(v));
      long long x = v.kind == Kind::floating  ? static_cast<long long>(v.f)
                    : v.kind == Kind::boolean ? v.b
                                              : v.i;
      std::snprintf(buf, sizeof(buf), (flags + "ll" + (conv == 'i' ? 'd' : conv)).c_str(), x);
      out += buf;
    } else if (conv == 'f' || conv == 'F' || conv == 'e' || conv == 'E' || conv == 'g' || conv == 'G') {
      if (!v.is_number()) throw TemplateError(std::string("must be real number, not ") + type_name(v));
      std::snprintf(buf, sizeof(buf), (flags + conv).c_str(), v.as_double());
      out += buf;
    } else {
      throw TemplateError(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (next < items.size() && !args.is_dict())
    throw TemplateError("not all arguments converted during string formatting");
  return out;
}

}  // namespace mamba::tmpl
