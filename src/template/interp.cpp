// The interpreter: Jinja2's scoping (a for loop's body gets a fresh scope each iteration, so
// `set` inside a loop does not leak; namespaces are the way out; macros see the template's
// top-level variables), Python's semantics for values (value.h), builtins (builtins.h).
#include "template/interp.h"

#include <algorithm>

#include "template/builtins.h"
#include "template/text.h"

namespace mamba::tmpl {

namespace {

constexpr uint64_t kMaxSteps = 20'000'000;      // statements and loop iterations per render
constexpr size_t kMaxOutput = size_t(1) << 28;  // bytes
constexpr int kMaxMacroDepth = 100;

struct Scope {
  std::vector<std::pair<std::string, Value>> vars;
  Scope* parent = nullptr;

  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent)
      for (const auto& [k, v] : s->vars)
        if (k == name) return &v;
    return nullptr;
  }
  void set(const std::string& name, Value v) {
    for (auto& [k, old] : vars)
      if (k == name) {
        old = std::move(v);
        return;
      }
    vars.emplace_back(name, std::move(v));
  }
};

enum class Flow { normal, break_, continue_ };

class Interp {
public:
  explicit Interp(const std::string& name) : name_(name) {}

  std::string run(const Program& program, const Value& vars) {
    Scope root;
    for (const auto& [k, v] : vars.dict->items) root.set(k, v);
    root_ = &root;
    std::string out;
    exec_body(program.body, root, out);
    return out;
  }

private:
  std::string where(int line, int col) const {
    return name_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
  }

  void step() {
    if (++steps_ > kMaxSteps) throw TemplateError("template took too many steps");
  }

  // ---- statements ----
  Flow exec_body(const Body& body, Scope& scope, std::string& out) {
    for (const auto& node : body) {
      Flow f = exec(*node, scope, out);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

  Flow exec(const Node& n, Scope& scope, std::string& out) {
    step();
    try {
      Flow f = exec_inner(n, scope, out);
      if (out.size() > kMaxOutput) throw TemplateError("output too large");
      return f;
    } catch (TemplateError& e) {
      if (e.located) throw;
      throw TemplateError(where(n.line, n.col) + e.what(), true);
    }
  }

  Flow exec_inner(const Node& n, Scope& scope, std::string& out) {
    switch (n.kind) {
      case NodeKind::text:
        out += n.text;
        return Flow::normal;
      case NodeKind::output:
        out += to_str(eval(*n.expr, scope));
        return Flow::normal;
      case NodeKind::if_:
        for (const auto& [cond, body] : n.branches)
          if (truthy(eval(*cond, scope))) return exec_body(body, scope, out);
        return exec_body(n.else_body, scope, out);
      case NodeKind::for_:
        exec_for(n, scope, out);
        return Flow::normal;
      case NodeKind::set:
        assign(n, scope, eval(*n.expr, scope));
        return Flow::normal;
      case NodeKind::set_block: {
        Value v = Value::string(capture(n.body, scope));
        if (n.expr) v = apply_block_filter(*n.expr, scope, v);
        scope.set(n.targets[0], v);
        return Flow::normal;
      }
      case NodeKind::macro:
        scope.set(n.text, macro_value(n));
        return Flow::normal;
      case NodeKind::filter_block:
        out += to_str(apply_block_filter(*n.expr, scope, Value::string(capture(n.body, scope))));
        return Flow::normal;
      case NodeKind::with: {
        Scope inner{{}, &scope};
        for (size_t k = 0; k < n.targets.size(); ++k) inner.set(n.targets[k], eval(*n.values[k], scope));
        return exec_body(n.body, inner, out);
      }
      case NodeKind::break_:
        return Flow::break_;
      case NodeKind::continue_:
        return Flow::continue_;
      case NodeKind::body:
        return exec_body(n.body, scope, out);
    }
    return Flow::normal;
  }

  std::string capture(const Body& body, Scope& scope) {
    std::string text;
    exec_body(body, scope, text);
    return text;
  }

  Value apply_block_filter(const Expr& chain, Scope& scope, const Value& text) {
    Scope inner{{}, &scope};
    inner.set("\x01block", text);
    return eval(chain, inner);
  }

  void bind_targets(const std::vector<std::string>& targets, const Value& v, Scope& scope) {
    if (targets.size() == 1) {
      scope.set(targets[0], v);
      return;
    }
    List items = v.is_list() || v.is_string() ? iterate(v) : List{};
    if (!v.is_list() && !v.is_string())
      throw TemplateError(std::string("cannot unpack non-iterable ") + type_name(v) + " object");
    if (items.size() < targets.size())
      throw TemplateError("not enough values to unpack (expected " + std::to_string(targets.size()) +
                          ", got " + std::to_string(items.size()) + ")");
    if (items.size() > targets.size())
      throw TemplateError("too many values to unpack (expected " + std::to_string(targets.size()) + ")");
    for (size_t k = 0; k < targets.size(); ++k) scope.set(targets[k], items[k]);
  }

  void assign(const Node& n, Scope& scope, const Value& v) {
    if (!n.text.empty()) {
      const Value* target = scope.find(n.targets[0]);
      if (!target || target->kind != Kind::ns)
        throw TemplateError("cannot assign attribute on non-namespace object");
      target->dict->set(n.text, v);
      return;
    }
    bind_targets(n.targets, v, scope);
  }

  Value loop_object(size_t index0, const List& items) {
    size_t length = items.size();
    Value loop = Value::make_dict();
    Dict& d = *loop.dict;
    d.set("index", Value::integer(static_cast<int64_t>(index0 + 1)));
    d.set("index0", Value::integer(static_cast<int64_t>(index0)));
    d.set("revindex", Value::integer(static_cast<int64_t>(length - index0)));
    d.set("revindex0", Value::integer(static_cast<int64_t>(length - index0 - 1)));
    d.set("first", Value::boolean(index0 == 0));
    d.set("last", Value::boolean(index0 + 1 == length));
    d.set("length", Value::integer(static_cast<int64_t>(length)));
    d.set("depth", Value::integer(1));
    d.set("depth0", Value::integer(0));
    d.set("previtem", index0 > 0 ? items[index0 - 1] : Value::undefined("there is no previous item"));
    d.set("nextitem", index0 + 1 < length ? items[index0 + 1] : Value::undefined("there is no next item"));
    d.set("cycle", Value::function([index0](CallArgs& a) -> Value {
            if (a.pos.empty()) throw TemplateError("no items for cycling given");
            return a.pos[index0 % a.pos.size()];
          }));
    return loop;
  }

  void exec_for(const Node& n, Scope& scope, std::string& out) {
    List items = iterate(eval(*n.expr, scope));
    if (n.cond) {
      List kept;
      for (const Value& item : items) {
        step();
        Scope probe{{}, &scope};
        bind_targets(n.targets, item, probe);
        if (truthy(eval(*n.cond, probe))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      Scope inner{{}, &scope};
      exec_body(n.else_body, inner, out);
      return;
    }
    for (size_t k = 0; k < items.size(); ++k) {
      step();
      Scope iteration{{}, &scope};
      bind_targets(n.targets, items[k], iteration);
      iteration.set("loop", loop_object(k, items));
      if (exec_body(n.body, iteration, out) == Flow::break_) break;
    }
  }

  Value macro_value(const Node& n) {
    return Value::function([this, &n](CallArgs& args) { return call_macro(n, args); });
  }

  Value call_macro(const Node& n, CallArgs& args) {
    if (macro_depth_ >= kMaxMacroDepth) throw TemplateError("maximum macro recursion depth exceeded");
    ++macro_depth_;
    Scope scope{{}, root_};
    std::vector<bool> given(n.params.size(), false);
    List varargs;
    for (size_t k = 0; k < args.pos.size(); ++k) {
      if (k < n.params.size()) {
        scope.set(n.params[k].name, args.pos[k]);
        given[k] = true;
      } else {
        varargs.push_back(args.pos[k]);
      }
    }
    Value kwargs = Value::make_dict();
    for (const auto& [key, v] : args.kw) {
      auto it = std::find_if(n.params.begin(), n.params.end(),
                             [&k = key](const MacroParam& p) { return p.name == k; });
      if (it == n.params.end()) {
        kwargs.dict->set(key, v);
        continue;
      }
      scope.set(key, v);
      given[it - n.params.begin()] = true;
    }
    for (size_t k = 0; k < n.params.size(); ++k) {
      if (given[k]) continue;
      const MacroParam& p = n.params[k];
      scope.set(p.name, p.default_value ? eval(*p.default_value, scope)
                                        : Value::undefined("parameter '" + p.name + "' was not provided"));
    }
    scope.set("varargs", Value::make_list(std::move(varargs), true));
    scope.set("kwargs", kwargs);
    std::string text = capture(n.body, scope);
    --macro_depth_;
    return Value::string(std::move(text));
  }

  // ---- expressions ----
  Value eval(const Expr& e, Scope& scope) {
    try {
      return eval_inner(e, scope);
    } catch (TemplateError& err) {
      if (err.located) throw;
      throw TemplateError(where(e.line, e.col) + err.what(), true);
    }
  }

  CallArgs eval_args(const Expr& e, Scope& scope, size_t first) {
    CallArgs args;
    for (size_t k = first; k < e.children.size(); ++k) args.pos.push_back(eval(*e.children[k], scope));
    for (const auto& [key, x] : e.kwargs) args.kw.emplace_back(key, eval(*x, scope));
    return args;
  }

  Value lookup(const std::string& name, Scope& scope) {
    if (const Value* v = scope.find(name)) return *v;
    return global_function(name);
  }

  Value eval_inner(const Expr& e, Scope& scope) {
    switch (e.kind) {
      case ExprKind::literal:
        return e.value;
      case ExprKind::name:
        return lookup(e.name, scope);
      case ExprKind::list:
      case ExprKind::tuple: {
        List items;
        for (const auto& c : e.children) items.push_back(eval(*c, scope));
        return Value::make_list(std::move(items), e.kind == ExprKind::tuple);
      }
      case ExprKind::dict: {
        Value d = Value::make_dict();
        for (size_t k = 0; k + 1 < e.children.size(); k += 2)
          d.dict->set(to_str(eval(*e.children[k], scope)), eval(*e.children[k + 1], scope));
        return d;
      }
      case ExprKind::getattr:
        return get_attr(eval(*e.children[0], scope), e.name);
      case ExprKind::getitem:
        return get_item(eval(*e.children[0], scope), eval(*e.children[1], scope));
      case ExprKind::slice:
        return eval_slice(e, scope);
      case ExprKind::call: {
        Value callee = eval(*e.children[0], scope);
        if (callee.is_undefined()) fail_undefined(callee);
        if (callee.kind != Kind::function)
          throw TemplateError(std::string("'") + type_name(callee) + "' object is not callable");
        CallArgs args = eval_args(e, scope, 1);
        return (*callee.fn)(args);
      }
      case ExprKind::filter: {
        Value self = eval(*e.children[0], scope);
        CallArgs args = eval_args(e, scope, 1);
        return apply_filter(e.name, self, args);
      }
      case ExprKind::test: {
        Value self = eval(*e.children[0], scope);
        CallArgs args = eval_args(e, scope, 1);
        return Value::boolean(apply_test(e.name, self, args));
      }
      case ExprKind::unary:
        return eval_unary(e, scope);
      case ExprKind::compare: {
        Value left = eval(*e.children[0], scope);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.children[k + 1], scope);
          if (!compare_op(e.ops[k], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case ExprKind::binary:
        return eval_binary(e, scope);
      case ExprKind::condition:
        if (truthy(eval(*e.children[0], scope))) return eval(*e.children[1], scope);
        return e.children[2] ? eval(*e.children[2], scope)
                             : Value::undefined("the inline if-expression had no else");
    }
    return Value::undefined();
  }

  Value eval_unary(const Expr& e, Scope& scope) {
    Value v = eval(*e.children[0], scope);
    if (e.name == "not") return Value::boolean(!truthy(v));
    if (v.is_undefined()) fail_undefined(v);
    if (!v.is_number())
      throw TemplateError("bad operand type for unary " + e.name + ": '" + type_name(v) + "'");
    if (e.name == "+") return v.kind == Kind::boolean ? Value::integer(v.b) : v;
    if (v.kind == Kind::floating) return Value::floating(-v.f);
    return arithmetic("-", Value::integer(0), v);
  }

  Value eval_binary(const Expr& e, Scope& scope) {
    const std::string& op = e.name;
    Value l = eval(*e.children[0], scope);
    if (op == "and") return truthy(l) ? eval(*e.children[1], scope) : l;
    if (op == "or") return truthy(l) ? l : eval(*e.children[1], scope);
    Value r = eval(*e.children[1], scope);
    if (op == "~") return Value::string(to_str(l) + to_str(r));
    return arithmetic(op, l, r);
  }

  static bool compare_op(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return equals(l, r);
    if (op == "!=") return !equals(l, r);
    if (op == "<") return ordered(l, r, op) < 0;
    if (op == ">") return ordered(l, r, op) > 0;
    if (op == "<=") return ordered(l, r, op) <= 0;
    if (op == ">=") return ordered(l, r, op) >= 0;
    if (op == "in") return value_contains(r, l);
    return !value_contains(r, l);  // not in
  }

  static int ordered(const Value& l, const Value& r, const std::string& op) {
    if (l.is_undefined()) fail_undefined(l);
    if (r.is_undefined()) fail_undefined(r);
    try {
      return compare(l, r);
    } catch (TemplateError&) {
      throw TemplateError("'" + op + "' not supported between instances of '" + type_name(l) + "' and '" +
                          type_name(r) + "'");
    }
  }

  Value eval_slice(const Expr& e, Scope& scope) {
    Value obj = eval(*e.children[0], scope);
    if (obj.is_undefined()) fail_undefined(obj);
    std::optional<int64_t> bounds[3];
    for (int k = 0; k < 3; ++k) {
      if (!e.children[k + 1]) continue;
      Value b = eval(*e.children[k + 1], scope);
      if (b.kind == Kind::none) continue;
      if (b.kind != Kind::integer && b.kind != Kind::boolean)
        throw TemplateError("slice indices must be integers or None");
      bounds[k] = b.kind == Kind::boolean ? b.b : b.i;
    }
    if (!obj.is_list() && !obj.is_string())
      return Value::undefined(std::string("'") + type_name(obj) + "' object is not subscriptable");
    int64_t step = bounds[2].value_or(1);
    if (step == 0) throw TemplateError("slice step cannot be zero");
    std::u32string cps;
    if (obj.is_string()) cps = utf8_decode(obj.s);
    int64_t n = obj.is_string() ? static_cast<int64_t>(cps.size()) : static_cast<int64_t>(obj.list->size());
    auto clamp = [&](std::optional<int64_t> x, int64_t fallback) {
      if (!x) return fallback;
      int64_t v = *x < 0 ? *x + n : *x;
      if (step > 0) return std::clamp<int64_t>(v, 0, n);
      return std::clamp<int64_t>(v, -1, n - 1);
    };
    int64_t start = clamp(bounds[0], step > 0 ? 0 : n - 1), stop = clamp(bounds[1], step > 0 ? n : -1);
    std::u32string out_cps;
    List out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (obj.is_string())
        out_cps += cps[k];
      else
        out.push_back((*obj.list)[k]);
    }
    if (obj.is_string()) return Value::string(utf8_encode(out_cps));
    return Value::make_list(std::move(out), obj.tuple);
  }

  const std::string& name_;
  Scope* root_ = nullptr;
  uint64_t steps_ = 0;
  int macro_depth_ = 0;
};

}  // namespace

std::string render_program(const Program& program, const std::string& name, const Value& vars) {
  return Interp(name).run(program, vars);
}

}  // namespace mamba::tmpl
