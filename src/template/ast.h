// Syntax tree of a parsed template: expressions (`Expr`) and statements (`Node`). Built once
// by the parser, then only read by the interpreter (one tree serves concurrent renders).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace mamba::tmpl {

enum class ExprKind {
  literal,    // value
  name,       // name
  list,       // children
  tuple,      // children
  dict,       // children: key0, value0, key1, value1, ...
  getattr,    // children[0].name
  getitem,    // children[0][children[1]]
  slice,      // children[0][children[1]:children[2]:children[3]] (null where omitted)
  call,       // children[0](children[1..], kwargs)
  filter,     // children[0] | name(children[1..], kwargs)
  test,       // children[0] is name(children[1..], kwargs)
  unary,      // op children[0]: "not", "-", "+"
  binary,     // children[0] op children[1]
  compare,    // children[0] ops[0] children[1] ops[1] children[2] ... (Python's chained comparison)
  condition,  // children[1] if children[0] else children[2] (null: undefined)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0, col = 0;
  Value value;
  std::string name;              // the name, attribute, filter, test, or operator
  std::vector<std::string> ops;  // compare: the operators between the children
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

enum class NodeKind {
  text,          // text
  output,        // {{ expr }}
  if_,           // branches: (cond, body) ...; else_body
  for_,          // targets in expr [if cond]: body; else_body
  set,           // targets (or target_obj.attr) = expr
  set_block,     // {% set x %}body{% endset %} (optional filter expr applied)
  macro,         // {% macro name(params) %}body{% endmacro %}
  filter_block,  // {% filter f %}body{% endfilter %}: expr is the filter chain over a placeholder
  with,          // {% with a = 1 %}body{% endwith %}
  break_,
  continue_,
  body,  // a plain sequence (generation blocks)
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Node {
  NodeKind kind;
  int line = 0, col = 0;
  std::string text;                  // text; macro name; set: namespace attribute ("" when plain)
  ExprPtr expr;                      // output, for iterable, set value, filter chain
  ExprPtr cond;                      // for ... if cond
  std::vector<std::string> targets;  // for/set names; with: names
  std::vector<ExprPtr> values;       // with: values
  std::vector<std::pair<ExprPtr, Body>> branches;  // if / elif
  Body body, else_body;
  std::vector<MacroParam> params;
};

struct Program {
  Body body;
};

}  // namespace mamba::tmpl
