// src/io/jinja/parser.cpp — see parser.hpp.
#include "io/jinja/parser.hpp"

#include <functional>
#include <initializer_list>

#include "io/jinja/interp.hpp"
#include "io/jinja/unicode.hpp"
#include "scalpel/errors.hpp"

namespace scalpel::jinja {
namespace {

constexpr int kMaxNesting = 100;  // nested expressions / blocks

// Statement tags jinja2 knows but scalpel does not implement.
bool is_unsupported_tag(const std::string& t) {
  for (const char* s : {"extends", "block", "include", "import", "from", "autoescape", "trans",
                        "pluralize", "do", "debug"})
    if (t == s) return true;
  return false;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const SourceMap& map) : toks_(std::move(tokens)), map_(map) {}

  Body parse() {
    Body body = subparse({});
    if (cur().type != Tok::Eof) fail_here("the end of the template");
    return body;
  }

 private:
  // ---- token stream ------------------------------------------------------

  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t n = 1) const { return toks_[std::min(i_ + n, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[i_];
    if (i_ + 1 < toks_.size()) ++i_;
    return t;
  }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }

  [[noreturn]] void fail_at(SourcePos pos, const std::string& msg) const {
    throw FormatError(map_.where(pos) + ": " + msg);
  }
  [[noreturn]] void fail_here(const std::string& expected) const {
    fail_at(cur().pos, "expected " + expected + ", got " + describe(cur()));
  }
  [[noreturn]] void unsupported_at(SourcePos pos, const std::string& what) const {
    throw Unsupported(map_.where(pos) + ": " + what +
                      " is outside the chat-template subset scalpel implements (see docs/chat_templates.md)");
  }

  void expect_op(const char* op) {
    if (!skip_op(op)) fail_here(std::string("'") + op + "'");
  }
  std::string expect_name(const std::string& what = "a name") {
    if (cur().type != Tok::Name) fail_here(what);
    return next().text;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) fail_here("end of statement block ('%}')");
    next();
  }

  // Guards recursion so that deeply nested input fails cleanly.
  struct Depth {
    Parser& p;
    explicit Depth(Parser& parser, SourcePos pos) : p(parser) {
      if (++p.depth_ > kMaxNesting)
        throw FormatError(p.map_.where(pos) + ": nesting: expected at most " +
                          std::to_string(kMaxNesting) + " nested expressions or blocks, got more");
    }
    ~Depth() { --p.depth_; }
  };

  ExprPtr make(ExprKind k, SourcePos pos) { return std::make_unique<Expr>(k, pos); }

  // ---- statements ----------------------------------------------------------

  // Parses template data, prints and statements until a block whose tag is
  // one of `end_tags` (left unconsumed: the current token is then that tag's
  // name) or the end of the template.
  Body subparse(std::initializer_list<const char*> end_tags) {
    Body body;
    while (cur().type != Tok::Eof) {
      const Token& t = cur();
      if (t.type == Tok::Data) {
        auto s = std::make_unique<Stmt>(StmtKind::Text, t.pos);
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.type == Tok::VarBegin) {
        const SourcePos pos = next().pos;
        auto s = std::make_unique<Stmt>(StmtKind::Print, pos);
        s->expr = parse_tuple(true, {}, false);
        if (cur().type != Tok::VarEnd) fail_here("end of print statement ('}}')");
        next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::BlockBegin) {
        next();
        for (const char* end : end_tags)
          if (is_name(end)) return body;
        body.push_back(parse_statement());
      } else {
        fail_here("template text, '{{' or '{%'");
      }
    }
    return body;
  }

  // Body of a block statement: "%}" then statements up to one of end_tags.
  Body parse_body(std::initializer_list<const char*> end_tags, const char* opener, SourcePos open_pos) {
    skip_op(":");  // jinja2 accepts a Python-style colon before %}
    expect_block_end();
    Depth d(*this, open_pos);
    std::string want;
    size_t k = 0;
    for (const char* e : end_tags) want += (k++ ? " or '" : "'") + std::string(e) + "'";
    open_blocks_.push_back(OpenBlock{opener, open_pos, want});
    Body body = subparse(end_tags);
    open_blocks_.pop_back();
    if (cur().type == Tok::Eof)
      fail_at(cur().pos, "expected " + want + " to close the '" + opener + "' opened at " + map_.where(open_pos) +
                             ", got end of template");
    return body;
  }

  StmtPtr parse_statement() {
    const Token& t = cur();
    if (t.type != Tok::Name) fail_here("a tag name");
    const std::string tag = t.text;
    const SourcePos pos = t.pos;
    StmtPtr s;
    if (tag == "if") {
      s = parse_if();
    } else if (tag == "for") {
      s = parse_for();
    } else if (tag == "set") {
      s = parse_set();
    } else if (tag == "macro") {
      s = parse_macro();
    } else if (tag == "call") {
      s = parse_call_block();
    } else if (tag == "filter") {
      s = parse_filter_block();
    } else if (tag == "with") {
      s = parse_with();
    } else if (tag == "print") {
      next();
      s = std::make_unique<Stmt>(StmtKind::Print, pos);
      s->expr = parse_tuple(true, {}, false);
    } else if (tag == "break" || tag == "continue") {
      next();
      if (loop_depth_ == 0) fail_at(pos, "'" + tag + "': expected to be inside a for loop, got it outside");
      s = std::make_unique<Stmt>(tag == "break" ? StmtKind::Break : StmtKind::Continue, pos);
    } else if (tag == "generation") {
      // transformers' AssistantTracker extension: renders its body in place.
      // Its body is a macro in jinja2, so break/continue cannot reach an
      // enclosing loop.
      next();
      s = std::make_unique<Stmt>(StmtKind::Scope, pos);
      const int saved_loops = loop_depth_;
      loop_depth_ = 0;
      s->body = parse_body({"endgeneration"}, "generation", pos);
      loop_depth_ = saved_loops;
      next();
    } else if (is_unsupported_tag(tag)) {
      unsupported_at(pos, "the '" + tag + "' tag");
    } else if (!open_blocks_.empty() && is_block_tag(tag)) {
      const OpenBlock& b = open_blocks_.back();
      fail_at(pos, "expected " + b.expected + " to close the '" + b.opener + "' opened at " + map_.where(b.pos) +
                       ", got '" + tag + "'");
    } else if (is_block_tag(tag)) {
      fail_at(pos, "expected a statement, got '" + tag + "' with no open block to close");
    } else {
      fail_at(pos, "expected a known tag (if, for, set, macro, call, filter, with, break, continue, "
                   "generation, raw), got unknown tag '" + tag + "'");
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_if() {
    const SourcePos pos = next().pos;
    auto s = std::make_unique<Stmt>(StmtKind::If, pos);
    while (true) {
      ExprPtr test = parse_tuple(false, {}, false);
      Body body = parse_body({"elif", "else", "endif"}, "if", pos);
      s->branches.emplace_back(std::move(test), std::move(body));
      const std::string tag = next().text;
      if (tag == "elif") continue;
      if (tag == "else") {
        s->else_body = parse_body({"endif"}, "if", pos);
        next();
      }
      break;
    }
    return s;
  }

  StmtPtr parse_for() {
    const SourcePos pos = next().pos;
    auto s = std::make_unique<Stmt>(StmtKind::For, pos);
    s->target = parse_target(false, {"in"});
    std::function<void(const Target&)> no_loop = [&](const Target& t) {
      if (t.kind == Target::Kind::Name && t.name == "loop")
        fail_at(t.pos, "for-loop target: expected a name other than 'loop' (the special loop variable), got 'loop'");
      for (const Target& x : t.items) no_loop(x);
    };
    no_loop(s->target);
    if (!skip_name("in")) fail_here("'in'");
    s->expr = parse_tuple(false, {"recursive"}, false);
    if (skip_name("if")) s->loop_filter = parse_expression(true);
    if (is_name("recursive")) unsupported_at(cur().pos, "a recursive for loop");
    ++loop_depth_;
    s->body = parse_body({"endfor", "else"}, "for", pos);
    --loop_depth_;
    if (next().text == "else") {
      s->else_body = parse_body({"endfor"}, "for", pos);
      next();
    }
    return s;
  }

  StmtPtr parse_set() {
    const SourcePos pos = next().pos;
    Target target = parse_target(true, {});
    if (skip_op("=")) {
      auto s = std::make_unique<Stmt>(StmtKind::Set, pos);
      s->target = std::move(target);
      s->expr = parse_tuple(true, {}, false);
      return s;
    }
    auto s = std::make_unique<Stmt>(StmtKind::SetBlock, pos);
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filters(nullptr, false);
    s->body = parse_body({"endset"}, "set", pos);
    next();
    return s;
  }

  // Parameter list "(a, b=default)" of a macro or call block.
  void parse_signature(MacroDef& m) {
    expect_op("(");
    while (!is_op(")")) {
      if (!m.params.empty()) expect_op(",");
      if (is_op(")")) break;
      const SourcePos ppos = cur().pos;
      m.params.push_back(expect_name("a parameter name"));
      if (skip_op("=")) {
        m.defaults.push_back(parse_expression(true));
      } else {
        for (const auto& d : m.defaults)
          if (d) fail_at(ppos, "parameter '" + m.params.back() +
                                   "': expected a default value (it follows a parameter with one), got none");
        m.defaults.push_back(nullptr);
      }
    }
    expect_op(")");
  }

  void analyse_macro(MacroDef& m) {
    // jinja2 passes caller/varargs/kwargs only to macros that mention them.
    std::function<void(const Expr*)> expr = [&](const Expr* e) {
      if (!e) return;
      if (e->kind == ExprKind::Name) {
        if (e->name == "caller") m.uses_caller = true;
        if (e->name == "varargs") m.uses_varargs = true;
        if (e->name == "kwargs") m.uses_kwargs = true;
      }
      for (const auto& x : e->items) expr(x.get());
      for (const auto& p : e->pairs) {
        expr(p.first.get());
        expr(p.second.get());
      }
      expr(e->a.get());
      expr(e->b.get());
      expr(e->c.get());
      for (const auto& x : e->args.pos) expr(x.get());
      for (const auto& x : e->args.kw) expr(x.second.get());
      expr(e->args.star.get());
      expr(e->args.starstar.get());
      for (const auto& x : e->comparisons) expr(x.second.get());
    };
    std::function<void(const Body&)> body = [&](const Body& b) {
      for (const auto& s : b) {
        expr(s->expr.get());
        expr(s->loop_filter.get());
        expr(s->filter.get());
        for (const auto& br : s->branches) {
          expr(br.first.get());
          body(br.second);
        }
        body(s->body);
        body(s->else_body);
        for (const auto& a : s->assignments) expr(a.second.get());
        if (s->macro) {
          for (const auto& d : s->macro->defaults) expr(d.get());
          body(s->macro->body);
        }
      }
    };
    for (const auto& d : m.defaults) expr(d.get());
    body(m.body);
  }

  StmtPtr parse_macro() {
    const SourcePos pos = next().pos;
    auto s = std::make_unique<Stmt>(StmtKind::Macro, pos);
    s->macro = std::make_shared<MacroDef>();
    s->macro->name = expect_name("a macro name");
    parse_signature(*s->macro);
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->macro->body = parse_body({"endmacro"}, "macro", pos);
    loop_depth_ = saved_loops;
    next();
    analyse_macro(*s->macro);
    return s;
  }

  StmtPtr parse_call_block() {
    const SourcePos pos = next().pos;
    auto s = std::make_unique<Stmt>(StmtKind::CallBlock, pos);
    s->macro = std::make_shared<MacroDef>();
    s->macro->name = "caller";
    if (is_op("(")) parse_signature(*s->macro);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::Call) fail_at(s->expr->pos, "call block: expected a call, got another expression");
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->macro->body = parse_body({"endcall"}, "call", pos);
    loop_depth_ = saved_loops;
    next();
    analyse_macro(*s->macro);
    return s;
  }

  StmtPtr parse_filter_block() {
    const SourcePos pos = next().pos;
    auto s = std::make_unique<Stmt>(StmtKind::FilterBlock, pos);
    s->filter = parse_filters(nullptr, true);
    s->body = parse_body({"endfilter"}, "filter", pos);
    next();
    return s;
  }

  StmtPtr parse_with() {
    const SourcePos pos = next().pos;
    auto s = std::make_unique<Stmt>(StmtKind::With, pos);
    while (cur().type != Tok::BlockEnd) {
      if (!s->assignments.empty()) expect_op(",");
      Target t = parse_target(false, {});
      expect_op("=");
      s->assignments.emplace_back(std::move(t), parse_expression(true));
    }
    s->body = parse_body({"endwith"}, "with", pos);
    next();
    return s;
  }

  // Assignment / loop target: a name, "ns.attr" (set only), or a tuple of them.
  Target parse_target(bool with_namespace, std::initializer_list<const char*> extra_end) {
    std::vector<Target> items;
    bool is_tuple = false;
    const SourcePos pos = cur().pos;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_target_end(extra_end)) break;
      items.push_back(parse_target_primary(with_namespace));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (items.empty()) fail_here("an assignment target");
    if (!is_tuple) return std::move(items[0]);
    Target t;
    t.kind = Target::Kind::Tuple;
    t.items = std::move(items);
    t.pos = pos;
    return t;
  }

  bool is_target_end(std::initializer_list<const char*> extra_end) const {
    if (cur().type == Tok::VarEnd || cur().type == Tok::BlockEnd || is_op(")")) return true;
    for (const char* e : extra_end)
      if (is_name(e)) return true;
    return false;
  }

  Target parse_target_primary(bool with_namespace) {
    Target t;
    t.pos = cur().pos;
    if (skip_op("(")) {
      Depth d(*this, t.pos);
      t = parse_target(false, {});
      expect_op(")");
      return t;
    }
    if (cur().type != Tok::Name) fail_here("an assignment target (a name)");
    t.name = next().text;
    if (t.name == "true" || t.name == "false" || t.name == "True" || t.name == "False" ||
        t.name == "none" || t.name == "None")
      fail_at(t.pos, "assignment: expected a name, got the constant '" + t.name + "'");
    if (with_namespace && is_op(".")) {
      next();
      t.kind = Target::Kind::NamespaceAttr;
      t.attr = expect_name("an attribute name");
    }
    return t;
  }

  // ---- expressions -----------------------------------------------------------

  // Expressions separated by commas form a tuple (jinja2's parse_tuple).
  ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<const char*> extra_end,
                      bool explicit_parentheses) {
    const SourcePos pos = cur().pos;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_target_end(extra_end)) break;
      args.push_back(parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parentheses) fail_here("an expression");
    }
    auto e = make(ExprKind::Tuple, pos);
    e->items = std::move(args);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Depth d(*this, cur().pos);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr expr = parse_or();
    while (is_name("if")) {
      const SourcePos pos = next().pos;
      auto e = make(ExprKind::Cond, pos);
      e->a = std::move(expr);
      e->b = parse_or();
      if (skip_name("else")) e->c = parse_condexpr();
      expr = std::move(e);
    }
    return expr;
  }

  ExprPtr binary(BinaryOp op, ExprPtr l, ExprPtr r, SourcePos pos) {
    auto e = make(ExprKind::Binary, pos);
    e->binary_op = op;
    e->a = std::move(l);
    e->b = std::move(r);
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const SourcePos pos = next().pos;
      left = binary(BinaryOp::Or, std::move(left), parse_and(), pos);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const SourcePos pos = next().pos;
      left = binary(BinaryOp::And, std::move(left), parse_not(), pos);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const SourcePos pos = next().pos;
      Depth d(*this, pos);
      auto e = make(ExprKind::Unary, pos);
      e->unary_op = UnaryOp::Not;
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const SourcePos pos = cur().pos;
    ExprPtr expr = parse_math1();
    std::vector<std::pair<CmpOp, ExprPtr>> ops;
    while (true) {
      CmpOp op;
      if (cur().type == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        const std::string& t = cur().text;
        op = t == "==" ? CmpOp::Eq : t == "!=" ? CmpOp::Ne : t == "<" ? CmpOp::Lt
           : t == "<=" ? CmpOp::Le : t == ">" ? CmpOp::Gt : CmpOp::Ge;
        next();
      } else if (is_name("in")) {
        next();
        op = CmpOp::In;
      } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
        next();
        next();
        op = CmpOp::NotIn;
      } else {
        break;
      }
      ops.emplace_back(op, parse_math1());
    }
    if (ops.empty()) return expr;
    auto e = make(ExprKind::Compare, pos);
    e->a = std::move(expr);
    e->comparisons = std::move(ops);
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const BinaryOp op = cur().text == "+" ? BinaryOp::Add : BinaryOp::Sub;
      const SourcePos pos = next().pos;
      left = binary(op, std::move(left), parse_concat(), pos);
    }
    return left;
  }

  ExprPtr parse_concat() {
    const SourcePos pos = cur().pos;
    std::vector<ExprPtr> args;
    args.push_back(parse_math2());
    while (skip_op("~")) args.push_back(parse_math2());
    if (args.size() == 1) return std::move(args[0]);
    auto e = make(ExprKind::Concat, pos);
    e->items = std::move(args);
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string& t = cur().text;
      const BinaryOp op = t == "*" ? BinaryOp::Mul : t == "/" ? BinaryOp::Div : t == "//" ? BinaryOp::FloorDiv : BinaryOp::Mod;
      const SourcePos pos = next().pos;
      left = binary(op, std::move(left), parse_pow(), pos);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const SourcePos pos = next().pos;
      left = binary(BinaryOp::Pow, std::move(left), parse_unary(true), pos);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const SourcePos pos = cur().pos;
    Depth d(*this, pos);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const UnaryOp op = cur().text == "-" ? UnaryOp::Neg : UnaryOp::Pos;
      next();
      node = make(ExprKind::Unary, pos);
      node->unary_op = op;
      node->a = parse_unary(false);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const SourcePos pos = t.pos;
    if (t.type == Tok::Name) {
      const std::string n = next().text;
      auto e = make(ExprKind::Const, pos);
      if (n == "true" || n == "True") {
        e->value = Value::boolean(true);
      } else if (n == "false" || n == "False") {
        e->value = Value::boolean(false);
      } else if (n == "none" || n == "None") {
        e->value = Value::none();
      } else {
        e->kind = ExprKind::Name;
        e->name = n;
      }
      return e;
    }
    if (t.type == Tok::String) {
      std::string s;
      while (cur().type == Tok::String) s += next().text;
      auto e = make(ExprKind::Const, pos);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (t.type == Tok::Int || t.type == Tok::Float) {
      auto e = make(ExprKind::Const, pos);
      e->value = t.type == Tok::Int ? Value::integer(t.ival) : Value::real(t.fval);
      next();
      return e;
    }
    if (is_op("(")) {
      next();
      ExprPtr e = parse_tuple(true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) return parse_list();
    if (is_op("{")) return parse_dict();
    fail_here("an expression");
  }

  ExprPtr parse_list() {
    const SourcePos pos = next().pos;
    auto e = make(ExprKind::List, pos);
    while (!is_op("]")) {
      if (!e->items.empty()) expect_op(",");
      if (is_op("]")) break;
      e->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return e;
  }

  ExprPtr parse_dict() {
    const SourcePos pos = next().pos;
    auto e = make(ExprKind::Dict, pos);
    while (!is_op("}")) {
      if (!e->pairs.empty()) expect_op(",");
      if (is_op("}")) break;
      ExprPtr key = parse_expression(true);
      expect_op(":");
      e->pairs.emplace_back(std::move(key), parse_expression(true));
    }
    expect_op("}");
    return e;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filters(std::move(node), false);
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& t = next();
    const SourcePos pos = t.pos;
    if (t.text == ".") {
      const Token& a = cur();
      if (a.type == Tok::Name) {
        auto e = make(ExprKind::GetAttr, pos);
        e->a = std::move(node);
        e->name = next().text;
        return e;
      }
      if (a.type != Tok::Int) fail_here("an attribute name or number after '.'");
      auto e = make(ExprKind::GetItem, pos);
      e->a = std::move(node);
      e->b = make(ExprKind::Const, a.pos);
      e->b->value = Value::integer(a.ival);
      next();
      return e;
    }
    // '['
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = make(ExprKind::GetItem, pos);
    e->a = std::move(node);
    if (args.size() == 1) {
      e->b = std::move(args[0]);
    } else {
      e->b = make(ExprKind::Tuple, pos);
      e->b->items = std::move(args);
    }
    return e;
  }

  ExprPtr parse_subscribed() {
    const SourcePos pos = cur().pos;
    std::vector<ExprPtr> parts;  // start, stop, step
    if (is_op(":")) {
      next();
      parts.push_back(nullptr);
    } else {
      ExprPtr node = parse_expression(true);
      if (!is_op(":")) return node;
      next();
      parts.push_back(std::move(node));
    }
    if (is_op(":") || is_op("]") || is_op(","))
      parts.push_back(nullptr);
    else
      parts.push_back(parse_expression(true));
    if (skip_op(":")) {
      if (is_op("]") || is_op(","))
        parts.push_back(nullptr);
      else
        parts.push_back(parse_expression(true));
    } else {
      parts.push_back(nullptr);
    }
    auto e = make(ExprKind::Slice, pos);
    e->items = std::move(parts);
    return e;
  }

  void parse_call_args(ArgList& args) {
    const SourcePos pos = cur().pos;
    expect_op("(");
    bool need_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) fail_at(pos, "call: expected positional arguments before keyword and * / ** arguments, got another order");
    };
    while (!is_op(")")) {
      if (need_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!args.star && !args.starstar);
        next();
        args.star = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!args.starstar);
        next();
        args.starstar = parse_expression(true);
      } else if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
        ensure(!args.starstar);
        std::string key = next().text;
        next();
        args.kw.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!args.star && !args.starstar && args.kw.empty());
        args.pos.push_back(parse_expression(true));
      }
      need_comma = true;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr node) {
    auto e = make(ExprKind::Call, cur().pos);
    e->a = std::move(node);
    parse_call_args(e->args);
    return e;
  }

  std::string dotted_name() {
    std::string name = expect_name("a filter or test name");
    while (skip_op(".")) name += "." + expect_name("a name after '.'");
    return name;
  }

  // One or more "| name(args)"; `node` may be null (set/filter blocks).
  ExprPtr parse_filters(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      const SourcePos pos = cur().pos;
      const std::string name = dotted_name();
      switch (filter_availability(name)) {
        case Availability::Implemented: break;
        case Availability::NotImplemented: unsupported_at(pos, "the filter '" + name + "'");
        case Availability::Unknown: fail_at(pos, "expected a known filter, got unknown filter '" + name + "'");
      }
      auto e = make(ExprKind::Filter, pos);
      e->a = std::move(node);
      e->name = name;
      if (is_op("(")) parse_call_args(e->args);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const SourcePos pos = next().pos;  // 'is'
    const bool negated = skip_name("not");
    const SourcePos name_pos = cur().pos;
    const std::string name = dotted_name();
    switch (test_availability(name)) {
      case Availability::Implemented: break;
      case Availability::NotImplemented: unsupported_at(name_pos, "the test '" + name + "'");
      case Availability::Unknown: fail_at(name_pos, "expected a known test, got unknown test '" + name + "'");
    }
    auto e = make(ExprKind::Test, pos);
    e->a = std::move(node);
    e->name = name;
    if (is_op("(")) {
      parse_call_args(e->args);
    } else if ((cur().type == Tok::Name || cur().type == Tok::String || cur().type == Tok::Int ||
                cur().type == Tok::Float || is_op("(") || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail_at(cur().pos, "expected a test argument, got a second 'is' (tests cannot be chained)");
      e->args.pos.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto n = make(ExprKind::Unary, pos);
    n->unary_op = UnaryOp::Not;
    n->a = std::move(e);
    return n;
  }

  // Blocks being parsed, innermost last (for messages about stray end tags).
  struct OpenBlock {
    std::string opener;
    SourcePos pos;
    std::string expected;
  };
  static bool is_block_tag(const std::string& t) {
    return t == "elif" || t == "else" || t.compare(0, 3, "end") == 0;
  }

  std::vector<OpenBlock> open_blocks_;
  std::vector<Token> toks_;
  const SourceMap& map_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::unique_ptr<Template> parse_template(const std::string& raw_source, const std::string& name) {
  const size_t bad = uni::invalid_utf8_offset(raw_source);
  if (bad != std::string::npos)
    throw FormatError(name + ": expected UTF-8 text, got an invalid byte at offset " + std::to_string(bad));
  auto t = std::make_unique<Template>();
  t->source = normalize_source(raw_source);
  t->map = std::make_unique<SourceMap>(name, t->source);
  Parser parser(tokenize(t->source, *t->map), *t->map);
  t->body = parser.parse();
  fold_constants(*t);
  return t;
}

}  // namespace scalpel::jinja
