// Recursive-descent parser following jinja2/parser.py's grammar and precedence:
// or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary - < postfix (. [] ()) and
// filters/tests. Unknown filters and tests are errors here, as in Jinja2's compile step.
#include "template/parser.h"

#include <set>

#include "core/error.h"
#include "template/builtins.h"
#include "template/lexer.h"

namespace mamba::tmpl {

namespace {

constexpr int kMaxDepth = 200;

class Parser {
public:
  Parser(std::vector<Token> tokens, const std::string& name) : toks_(std::move(tokens)), name_(name) {}

  Program parse() {
    Program program;
    program.body = parse_body({});
    return program;
  }

private:
  // ---- token helpers ----
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().type == Tok::op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::name && cur().text == n; }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::text:
        return "text";
      case Tok::var_begin:
        return "'{{'";
      case Tok::var_end:
        return "end of print statement '}}'";
      case Tok::block_begin:
        return "'{%'";
      case Tok::block_end:
        return "end of statement block '%}'";
      case Tok::name:
        return "'" + t.text + "'";
      case Tok::string:
        return "string";
      case Tok::integer:
      case Tok::floating:
        return "number";
      case Tok::op:
        return "'" + t.text + "'";
      case Tok::eof:
        return "end of template";
    }
    return "token";
  }

  [[noreturn]] void fail_at(const Token& t, const std::string& what) const {
    throw_error(ErrorCode::parse, name_, ":", t.line, ":", t.col, ": ", what);
  }
  [[noreturn]] void expected(const std::string& what) const {
    fail_at(cur(), "expected " + what + ", got " + describe(cur()));
  }
  void expect_op(const char* op) {
    if (!is_op(op)) expected(std::string("'") + op + "'");
    advance();
  }
  void expect_name(const char* n) {
    if (!is_name(n)) expected(std::string("'") + n + "'");
    advance();
  }
  std::string expect_identifier() {
    if (cur().type != Tok::name) expected("a name");
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::block_end) expected("end of statement block '%}'");
    advance();
  }

  ExprPtr make(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  NodePtr make_node(NodeKind kind, const Token& at) {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->line = at.line;
    n->col = at.col;
    return n;
  }

  // ---- statements ----
  // Parses until `{% <one of end_tags>`, leaving the position at that tag's name.
  Body parse_body(const std::set<std::string>& end_tags) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::eof) {
        if (end_tags.empty()) return body;
        std::string list;
        for (const auto& e : end_tags) list += (list.empty() ? "'" : " or '") + e + "'";
        fail_at(t, "unexpected end of template, expected " + list);
      }
      if (t.type == Tok::text) {
        auto n = make_node(NodeKind::text, t);
        n->text = t.text;
        body.push_back(std::move(n));
        advance();
      } else if (t.type == Tok::var_begin) {
        auto n = make_node(NodeKind::output, t);
        advance();
        n->expr = parse_tuple(true);
        if (cur().type != Tok::var_end) expected("end of print statement '}}'");
        advance();
        body.push_back(std::move(n));
      } else if (t.type == Tok::block_begin) {
        advance();
        if (cur().type == Tok::name && end_tags.count(cur().text)) return body;
        body.push_back(parse_statement());
      } else {
        expected("text or a tag");
      }
    }
  }

  // Ends the body started by a tag: expects `{% end_tag %}`.
  void finish(const char* end_tag) {
    expect_name(end_tag);
    expect_block_end();
  }

  NodePtr parse_statement() {
    const Token start = cur();
    if (start.type != Tok::name) expected("a statement name");
    const std::string& kw = start.text;
    if (kw == "for") return parse_for();
    if (kw == "if") return parse_if();
    if (kw == "set") return parse_set();
    if (kw == "macro") return parse_macro();
    if (kw == "filter") return parse_filter_block();
    if (kw == "with") return parse_with();
    if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) fail_at(start, "'" + kw + "' outside of a loop");
      advance();
      expect_block_end();
      return make_node(kw == "break" ? NodeKind::break_ : NodeKind::continue_, start);
    }
    if (kw == "generation") {  // HF's AssistantTracker: renders its body unchanged
      advance();
      expect_block_end();
      auto n = make_node(NodeKind::body, start);
      n->body = parse_body({"endgeneration"});
      finish("endgeneration");
      return n;
    }
    static const std::set<std::string> kUnsupported = {"call", "include", "extends",    "block", "import",
                                                       "from", "do",      "autoescape", "trans"};
    if (kUnsupported.count(kw)) fail_at(start, "unsupported tag '" + kw + "'");
    fail_at(start, "unknown tag '" + kw + "'");
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) advance();
    names.push_back(expect_identifier());
    while (is_op(",")) {
      advance();
      if (cur().type != Tok::name || is_name("in")) break;
      names.push_back(expect_identifier());
    }
    if (paren) expect_op(")");
    return names;
  }

  NodePtr parse_for() {
    auto n = make_node(NodeKind::for_, cur());
    advance();
    n->targets = parse_targets();
    expect_name("in");
    n->expr = parse_tuple(false);
    if (is_name("recursive")) fail_at(cur(), "recursive loops are not supported");
    if (is_name("if")) {
      advance();
      n->cond = parse_expression(true);
    }
    expect_block_end();
    ++loop_depth_;
    n->body = parse_body({"endfor", "else"});
    --loop_depth_;
    if (is_name("else")) {
      advance();
      expect_block_end();
      n->else_body = parse_body({"endfor"});
    }
    finish("endfor");
    return n;
  }

  NodePtr parse_if() {
    auto n = make_node(NodeKind::if_, cur());
    advance();
    while (true) {
      ExprPtr cond = parse_tuple(false);
      expect_block_end();
      Body body = parse_body({"elif", "else", "endif"});
      n->branches.emplace_back(std::move(cond), std::move(body));
      if (is_name("elif")) {
        advance();
        continue;
      }
      if (is_name("else")) {
        advance();
        expect_block_end();
        n->else_body = parse_body({"endif"});
      }
      finish("endif");
      return n;
    }
  }

  NodePtr parse_set() {
    const Token start = cur();
    advance();
    std::string first = expect_identifier();
    auto n = make_node(NodeKind::set, start);
    if (is_op(".")) {  // ns.attr = value
      advance();
      n->targets.push_back(first);
      n->text = expect_identifier();
    } else {
      n->targets.push_back(first);
      while (is_op(",")) {
        advance();
        n->targets.push_back(expect_identifier());
      }
    }
    if (is_op("=")) {
      advance();
      n->expr = parse_tuple(true);
      expect_block_end();
      return n;
    }
    if (n->targets.size() != 1 || !n->text.empty()) expected("'='");
    n->kind = NodeKind::set_block;
    if (is_op("|")) n->expr = parse_filter_chain(placeholder(cur()));
    expect_block_end();
    n->body = parse_body({"endset"});
    finish("endset");
    return n;
  }

  NodePtr parse_macro() {
    auto n = make_node(NodeKind::macro, cur());
    advance();
    n->text = expect_identifier();
    expect_op("(");
    while (!is_op(")")) {
      if (!n->params.empty()) expect_op(",");
      if (is_op(")")) break;
      MacroParam p;
      p.name = expect_identifier();
      if (is_op("=")) {
        advance();
        p.default_value = parse_expression(true);
      }
      n->params.push_back(std::move(p));
    }
    advance();
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    n->body = parse_body({"endmacro"});
    loop_depth_ = saved;
    finish("endmacro");
    return n;
  }

  // The value a filter block or block set applies its filters to.
  ExprPtr placeholder(const Token& at) {
    auto e = make(ExprKind::name, at);
    e->name = "\x01block";
    return e;
  }

  NodePtr parse_filter_block() {
    auto n = make_node(NodeKind::filter_block, cur());
    advance();
    n->expr = parse_filter_chain(placeholder(cur()), true);
    expect_block_end();
    n->body = parse_body({"endfilter"});
    finish("endfilter");
    return n;
  }

  NodePtr parse_with() {
    auto n = make_node(NodeKind::with, cur());
    advance();
    while (cur().type != Tok::block_end) {
      if (!n->targets.empty()) expect_op(",");
      n->targets.push_back(expect_identifier());
      expect_op("=");
      n->values.push_back(parse_expression(true));
    }
    expect_block_end();
    n->body = parse_body({"endwith"});
    finish("endwith");
    return n;
  }

  // ---- expressions ----
  struct DepthGuard {
    DepthGuard(Parser& p) : parser(p) {
      if (++parser.depth_ > kMaxDepth) parser.fail_at(parser.cur(), "expression nested too deeply");
    }
    ~DepthGuard() { --parser.depth_; }
    Parser& parser;
  };

  bool is_tuple_end() const {
    return cur().type == Tok::var_end || cur().type == Tok::block_end || cur().type == Tok::eof ||
           is_op(")") || is_name("recursive") || is_name("if");
  }

  ExprPtr parse_tuple(bool with_condexpr) {
    const Token start = cur();
    ExprPtr first = parse_expression(with_condexpr);
    if (!is_op(",")) return first;
    auto t = make(ExprKind::tuple, start);
    t->children.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (is_tuple_end()) break;
      t->children.push_back(parse_expression(with_condexpr));
    }
    return t;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    ExprPtr e = parse_or();
    if (!with_condexpr) return e;
    while (is_name("if")) {
      auto c = make(ExprKind::condition, cur());
      advance();
      ExprPtr cond = parse_or();
      ExprPtr other;
      if (is_name("else")) {
        advance();
        other = parse_expression(true);
      }
      c->children.push_back(std::move(cond));
      c->children.push_back(std::move(e));
      c->children.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const Token& at, const std::string& op, ExprPtr l, ExprPtr r) {
    auto b = make(ExprKind::binary, at);
    b->name = op;
    b->children.push_back(std::move(l));
    b->children.push_back(std::move(r));
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      const Token at = cur();
      advance();
      l = binary(at, "or", std::move(l), parse_and());
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      const Token at = cur();
      advance();
      l = binary(at, "and", std::move(l), parse_not());
    }
    return l;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto u = make(ExprKind::unary, cur());
      advance();
      u->name = "not";
      u->children.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token start = cur();
    ExprPtr first = parse_math1();
    ExprPtr chain;
    while (true) {
      std::string op;
      if (cur().type == Tok::op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().type == Tok::name && peek().text == "in") {
        op = "not in";
        advance();
        advance();
      } else {
        break;
      }
      if (!chain) {
        chain = make(ExprKind::compare, start);
        chain->children.push_back(std::move(first));
      }
      chain->ops.push_back(op);
      chain->children.push_back(parse_math1());
    }
    return chain ? std::move(chain) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token at = cur();
      advance();
      l = binary(at, at.text, std::move(l), parse_concat());
    }
    return l;
  }

  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      const Token at = cur();
      advance();
      l = binary(at, "~", std::move(l), parse_math2());
    }
    return l;
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token at = cur();
      advance();
      l = binary(at, at.text, std::move(l), parse_pow());
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      const Token at = cur();
      advance();
      l = binary(at, "**", std::move(l), parse_unary(true));
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto u = make(ExprKind::unary, cur());
      u->name = cur().text;
      advance();
      u->children.push_back(parse_unary(false));
      e = std::move(u);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token t = cur();
    switch (t.type) {
      case Tok::name: {
        advance();
        auto e = make(ExprKind::literal, t);
        if (t.text == "true" || t.text == "True")
          e->value = Value::boolean(true);
        else if (t.text == "false" || t.text == "False")
          e->value = Value::boolean(false);
        else if (t.text == "none" || t.text == "None")
          e->value = Value::none();
        else {
          e->kind = ExprKind::name;
          e->name = t.text;
        }
        return e;
      }
      case Tok::string: {
        std::string s;
        while (cur().type == Tok::string) {
          s += cur().text;
          advance();
        }
        auto e = make(ExprKind::literal, t);
        e->value = Value::string(std::move(s));
        return e;
      }
      case Tok::integer:
      case Tok::floating: {
        advance();
        auto e = make(ExprKind::literal, t);
        e->value = t.type == Tok::integer ? Value::integer(t.ival) : Value::floating(t.fval);
        return e;
      }
      case Tok::op:
        if (t.text == "(") return parse_parenthesized();
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    expected("an expression");
  }

  ExprPtr parse_parenthesized() {
    const Token start = cur();
    advance();
    if (is_op(")")) {
      advance();
      return make(ExprKind::tuple, start);
    }
    ExprPtr first = parse_expression(true);
    if (is_op(")")) {
      advance();
      return first;
    }
    auto t = make(ExprKind::tuple, start);
    t->children.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (is_op(")")) break;
      t->children.push_back(parse_expression(true));
    }
    expect_op(")");
    return t;
  }

  ExprPtr parse_list() {
    auto e = make(ExprKind::list, cur());
    advance();
    while (!is_op("]")) {
      if (!e->children.empty()) {
        expect_op(",");
        if (is_op("]")) break;
      }
      e->children.push_back(parse_expression(true));
    }
    advance();
    return e;
  }

  ExprPtr parse_dict() {
    auto e = make(ExprKind::dict, cur());
    advance();
    while (!is_op("}")) {
      if (!e->children.empty()) {
        expect_op(",");
        if (is_op("}")) break;
      }
      e->children.push_back(parse_expression(true));
      expect_op(":");
      e->children.push_back(parse_expression(true));
    }
    advance();
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const Token at = cur();
        advance();
        if (cur().type == Tok::integer) {  // x.0 is x[0]
          auto g = make(ExprKind::getitem, at);
          auto idx = make(ExprKind::literal, cur());
          idx->value = Value::integer(cur().ival);
          advance();
          g->children.push_back(std::move(e));
          g->children.push_back(std::move(idx));
          e = std::move(g);
          continue;
        }
        auto g = make(ExprKind::getattr, at);
        g->name = expect_identifier();
        g->children.push_back(std::move(e));
        e = std::move(g);
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    const Token at = cur();
    advance();
    ExprPtr parts[3];
    int n_colons = 0;
    if (!is_op(":")) parts[0] = parse_expression(true);
    while (is_op(":") && n_colons < 2) {
      advance();
      ++n_colons;
      if (!is_op(":") && !is_op("]")) parts[n_colons] = parse_expression(true);
    }
    expect_op("]");
    auto e = make(n_colons ? ExprKind::slice : ExprKind::getitem, at);
    e->children.push_back(std::move(obj));
    if (n_colons == 0) {
      e->children.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) e->children.push_back(std::move(p));
    }
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;
      }
      first = false;
      if (cur().type == Tok::name && peek().type == Tok::op && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        e.kwargs.emplace_back(key, parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail_at(cur(), "positional argument after keyword argument");
        e.children.push_back(parse_expression(true));
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(ExprKind::call, cur());
    e->children.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  std::string dotted_name() {
    std::string n = expect_identifier();
    while (is_op(".")) {
      advance();
      n += '.';
      n += expect_identifier();
    }
    return n;
  }

  ExprPtr parse_filter_chain(ExprPtr e, bool start_inline = false) {
    while (start_inline || is_op("|")) {
      if (!start_inline) advance();
      start_inline = false;
      const Token at = cur();
      auto f = make(ExprKind::filter, at);
      f->name = dotted_name();
      if (!has_filter(f->name)) fail_at(at, "no filter named '" + f->name + "'");
      f->children.push_back(std::move(e));
      if (is_op("(")) parse_call_args(*f);
      e = std::move(f);
    }
    return e;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter_chain(std::move(e));
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_test(ExprPtr e) {
    advance();  // 'is'
    bool negated = false;
    if (is_name("not")) {
      advance();
      negated = true;
    }
    const Token at = cur();
    auto t = make(ExprKind::test, at);
    t->name = dotted_name();
    if (!has_test(t->name)) fail_at(at, "no test named '" + t->name + "'");
    t->children.push_back(std::move(e));
    if (is_op("(")) {
      parse_call_args(*t);
    } else if ((cur().type == Tok::name || cur().type == Tok::string || cur().type == Tok::integer ||
                cur().type == Tok::floating || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail_at(cur(), "you cannot chain multiple tests with is");
      t->children.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return t;
    auto u = make(ExprKind::unary, at);
    u->name = "not";
    u->children.push_back(std::move(t));
    return u;
  }

  std::vector<Token> toks_;
  const std::string& name_;
  size_t pos_ = 0;
  int loop_depth_ = 0;
  int depth_ = 0;
};

}  // namespace

Program parse_template(const std::string& source, const std::string& name) {
  return Parser(tokenize(source, name), name).parse();
}

}  // namespace mamba::tmpl
