// Filters, tests, methods of str/dict, attribute and item lookup, and the global functions of
// the template language (Jinja2's builtins plus what HF installs: tojson with indent,
// raise_exception, strftime_now). Errors are thrown as TemplateError (located by the caller).
#pragma once
#include <string>

#include "template/value.h"

namespace mamba::tmpl {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& self, CallArgs& args);
bool apply_test(const std::string& name, const Value& self, CallArgs& args);

// `obj.name` as Jinja2's getattr: a method of str/dict first, then the dict key. A missing
// attribute is undefined (whose `s` says what was missing); an undefined `obj` is an error.
Value get_attr(const Value& obj, const std::string& name);
// `obj[key]` as Jinja2's getitem: index (negative from the end) or key, then attribute.
Value get_item(const Value& obj, const Value& key);

// range, dict, namespace, raise_exception, strftime_now; undefined for other names.
Value global_function(const std::string& name);

// Throws the UndefinedError of Jinja2 for using `v` (undefined) where a value is needed.
[[noreturn]] void fail_undefined(const Value& v);

}  // namespace mamba::tmpl

namespace mamba::tmpl {
// `item in container` with Python's rules (substring, list member, dict key; undefined: empty).
bool value_contains(const Value& container, const Value& item);
}  // namespace mamba::tmpl
