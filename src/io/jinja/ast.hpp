// src/io/jinja/ast.hpp — syntax tree of a parsed chat template.
//
// The node set mirrors jinja2's (nodes.py) for the supported subset, so that
// the interpreter can follow jinja2's evaluation rules node by node.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/jinja/value.hpp"

namespace scalpel::jinja {

/// Byte offset into the (newline-normalised) template source; turned into
/// line:column for messages.
using SourcePos = size_t;

// ---------------------------------------------------------------------------
// Expressions

enum class ExprKind {
  Const,      // literal (string, number, true/false/none)
  Name,       // variable
  List,       // [a, b]
  Tuple,      // (a, b) or a, b
  Dict,       // {k: v}
  GetAttr,    // obj.name
  GetItem,    // obj[key], obj.0
  Slice,      // a:b:c inside [] (only as GetItem's key)
  Call,       // f(args)
  Filter,     // value | name(args)
  Test,       // value is name(args)
  Unary,      // -x, +x, not x
  Binary,     // arithmetic, and, or
  Concat,     // a ~ b ~ c
  Compare,    // a < b == c, in, not in
  Cond,       // a if c else b
};

enum class UnaryOp { Neg, Pos, Not };
enum class BinaryOp { Add, Sub, Mul, Div, FloorDiv, Mod, Pow, And, Or };
enum class CmpOp { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

/// Arguments as written at a call site: f(a, b, k=v, *args, **kwargs).
struct ArgList {
  std::vector<ExprPtr> pos;
  std::vector<std::pair<std::string, ExprPtr>> kw;
  ExprPtr star;       // *args (may be null)
  ExprPtr starstar;   // **kwargs (may be null)
};

struct Expr {
  ExprKind kind;
  SourcePos pos = 0;

  Value value;                 // Const
  std::string name;            // Name, GetAttr attribute, Filter / Test name
  std::vector<ExprPtr> items;  // List, Tuple, Concat; Slice: start, stop, step (null = omitted)
  std::vector<std::pair<ExprPtr, ExprPtr>> pairs;  // Dict
  ExprPtr a;                   // operand / object / callee / filtered value / condition's "then"
  ExprPtr b;                   // GetItem key, Binary right, Cond test
  ExprPtr c;                   // Cond else (null: undefined)
  ArgList args;                // Call, Filter, Test
  UnaryOp unary_op = UnaryOp::Neg;
  BinaryOp binary_op = BinaryOp::Add;
  std::vector<std::pair<CmpOp, ExprPtr>> comparisons;  // Compare: a (op expr)...

  Expr(ExprKind k, SourcePos p) : kind(k), pos(p) {}
};

// ---------------------------------------------------------------------------
// Statements

enum class StmtKind {
  Text,       // template data
  Print,      // {{ expr }}
  If,
  For,
  Set,        // {% set target = expr %}
  SetBlock,   // {% set target | filters %}...{% endset %}
  Macro,
  CallBlock,  // {% call(params) macro(args) %}...{% endcall %}
  FilterBlock,
  With,
  Break,
  Continue,
  Scope,      // a body rendered in place (transformers' {% generation %})
};

/// Left side of an assignment or loop target.
struct Target {
  enum class Kind { Name, Tuple, NamespaceAttr } kind = Kind::Name;
  std::string name;            // Name; NamespaceAttr: the namespace variable
  std::string attr;            // NamespaceAttr
  std::vector<Target> items;   // Tuple
  SourcePos pos = 0;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

/// A macro (or the body of a call block, which is an anonymous macro).
struct MacroDef {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param, null when none
  Body body;
  bool uses_caller = false;
  bool uses_varargs = false;
  bool uses_kwargs = false;
};

struct Stmt {
  StmtKind kind;
  SourcePos pos = 0;

  std::string text;                                  // Text
  ExprPtr expr;                                      // Print, Set, For iterable, CallBlock call
  std::vector<std::pair<ExprPtr, Body>> branches;    // If / elif
  Body body;                                         // For, SetBlock, FilterBlock, With, Scope
  Body else_body;                                    // If, For
  Target target;                                     // For, Set, SetBlock
  ExprPtr loop_filter;                               // For ... if cond
  ExprPtr filter;                                    // SetBlock / FilterBlock: filter chain on a null value
  std::shared_ptr<MacroDef> macro;                   // Macro, CallBlock
  std::vector<std::pair<Target, ExprPtr>> assignments;  // With

  Stmt(StmtKind k, SourcePos p) : kind(k), pos(p) {}
};

}  // namespace scalpel::jinja
