// src/io/jinja/interp.hpp — the evaluator: renders a parsed Template with a
// context, following jinja2's runtime semantics (scoping, Undefined, loop
// variable, macros) as configured by transformers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "io/jinja/parser.hpp"
#include "io/jinja/value.hpp"

namespace scalpel::jinja {

/// Safety bounds (exceeding one is an error, never a hang or a crash).
constexpr int kMaxDepth = 400;                       // nested evaluation (expressions, blocks, calls)
constexpr int kMaxMacroDepth = 100;                  // nested macro calls
constexpr int64_t kMaxIterations = 10'000'000;       // loop iterations and filter items per render
constexpr size_t kMaxOutputBytes = size_t{256} << 20;  // rendered text and any string built
constexpr size_t kMaxItems = 10'000'000;             // items in one list built by an operator

/// A variable scope. Loop iterations, macro calls, with-blocks and captured
/// blocks get a child scope; `set` writes to the innermost one; `if` does not
/// open a scope (jinja2's rules).
struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
};
using FramePtr = std::shared_ptr<Frame>;

/// A built-in callable (global function or bound method).
class Function : public Object {
 public:
  using Fn = std::function<Value(Interp&, CallArgs&)>;
  Function(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string type_name() const override { return "builtin_function_or_method"; }
  bool callable() const override { return true; }
  Value call(Interp& interp, CallArgs& args) const override { return fn_(interp, args); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Fn fn_;
};

/// jinja2's namespace() object (transformers' TemplateNamespace, which
/// refuses names starting with "_").
class Namespace : public Object {
 public:
  ~Namespace() override;
  std::string type_name() const override { return "Namespace"; }
  std::string repr() const override;
  Value getattr(const std::string& name) const override;
  bool is_namespace() const override { return true; }
  void set(const std::string& name, const Value& v);
  /// Drops the attributes (to break reference cycles after a render).
  void clear();

 private:
  DictData attrs_;
  mutable bool in_repr_ = false;  // repr of a namespace that contains itself
};

class Interp {
 public:
  Interp(const Template& tpl, const DictData& context);
  /// Breaks the reference cycles a render may leave (a macro stored in the
  /// scope it closes over, a namespace holding itself).
  ~Interp();
  Interp(const Interp&) = delete;
  Interp& operator=(const Interp&) = delete;

  /// Renders the template. Throws EvalError (already located).
  std::string render();

  /// Evaluates `e` as jinja2's compile-time constant folding (Node.as_const)
  /// would: false when the expression is not constant or its evaluation
  /// fails (jinja2 then evaluates it at run time).
  bool const_eval(const Expr& e, Value* out);

  // ---- services for the built-ins -----------------------------------------
  /// Calls any callable value.
  Value call(const Value& callee, CallArgs& args);
  /// Counts `n` units of work against kMaxIterations.
  void count_work(int64_t n);
  /// jinja2's environment.getattr / getitem (sandboxed).
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  /// Runs a macro body (used by Macro objects).
  Value call_macro(const std::shared_ptr<const MacroDef>& def, const FramePtr& closure, CallArgs& args);
  /// Records a namespace created during the render (see ~Interp).
  void track(const std::shared_ptr<Namespace>& ns) { namespaces_.push_back(ns); }

 private:
  enum class Flow { Normal, Break, Continue };
  friend class DepthGuard;

  Flow exec(const Body& body, const FramePtr& frame);
  Flow exec_stmt(const Stmt& s, const FramePtr& frame);
  Flow exec_for(const Stmt& s, const FramePtr& frame);
  void exec_call_block(const Stmt& s, const FramePtr& frame);
  std::string capture(const Body& body, const FramePtr& frame, Flow* flow = nullptr);
  void assign(const Target& t, const Value& v, Frame& frame);
  void write(const std::string& text);

  Value eval(const Expr& e, Frame& frame);
  Value eval_node(const Expr& e, Frame& frame);
  Value lookup(const std::string& name, const Frame& frame) const;
  void eval_args(const ArgList& a, Frame& frame, CallArgs& out);
  Value eval_filter(const Expr& e, Frame& frame, const Value* block_input);
  Value eval_compare(const Expr& e, Frame& frame);

  const Template& tpl_;
  bool const_mode_ = false;
  FramePtr root_;
  std::unordered_map<std::string, Value> globals_;
  std::string* out_ = nullptr;
  int depth_ = 0;
  int macro_depth_ = 0;
  int64_t work_ = 0;
  std::vector<std::weak_ptr<Frame>> closures_;       // scopes captured by macros
  std::vector<std::weak_ptr<Namespace>> namespaces_;  // namespaces created
};

/// jinja2's optimizer: replaces constant sub-expressions by their value when
/// it is a plain literal value, and constant {{ }} by their text. Runs once
/// after parsing; it matters because constant folding uses jinja2's sandboxed
/// getitem for slices (a failed slice gives Undefined instead of an error).
void fold_constants(Template& tpl);

/// Built-in filters / tests (filters.cpp).
Value call_filter(Interp& interp, const std::string& name, const Value& v, CallArgs& args);
bool call_test(Interp& interp, const std::string& name, const Value& v, CallArgs& args);

/// Attribute / item access and methods of built-in types (methods.cpp).
Value builtin_getattr(Interp& interp, const Value& obj, const std::string& name);
Value builtin_getitem(Interp& interp, const Value& obj, const Value& key);
/// The Python attribute (method, range.start, ...) of a non-object value.
bool python_attribute(const Value& obj, const std::string& name, Value* out);
/// Python's str % args and str.format (format.cpp).
std::string percent_format(const std::string& fmt, const Value& args);
std::string brace_format(Interp& interp, const std::string& fmt, const CallArgs& args);

/// Operators (ops.cpp).
Value binary_op(BinaryOp op, const Value& a, const Value& b);
Value unary_op(UnaryOp op, const Value& a);
bool contains(const Value& container, const Value& item);
/// Python slicing of a str/list/tuple/range with optional bounds.
Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step);

/// Global functions (globals.cpp): range, dict, namespace, cycler, joiner,
/// raise_exception, strftime_now.
void install_globals(std::unordered_map<std::string, Value>& globals);

/// Python str methods on UTF-8 strings, used by methods and filters.
namespace pystr {
std::string strip(const std::string& s, const Value& chars, bool left, bool right);
std::vector<std::string> split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right);
std::vector<std::string> splitlines(const std::string& s, bool keepends);
std::string replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count);
std::string html_escape(const std::string& s);
std::string pad(const std::string& s, int64_t width, char32_t fill, int align);  // align <0 left, 0 center, >0 right
}  // namespace pystr

/// Python's float(str) / int(str, base) parsing; false when invalid.
bool parse_py_float(const std::string& s, double* out);
bool parse_py_int(const std::string& s, int base, int64_t* out);

/// Small helper to bind call arguments to a Python-style signature.
class Args {
 public:
  /// `names` are the parameters in order; the first `required` must be given.
  Args(const std::string& func, const CallArgs& a, std::initializer_list<const char*> names, size_t required);
  bool has(size_t i) const { return given_[i]; }
  const Value& operator[](size_t i) const { return values_[i]; }
  Value get(size_t i, Value fallback) const { return given_[i] ? values_[i] : std::move(fallback); }

 private:
  std::vector<Value> values_;
  std::vector<bool> given_;
};

/// Checks (TypeError messages in Python's words).
int64_t expect_int(const Value& v, const std::string& what);
const std::string& expect_str(const Value& v, const std::string& what);

}  // namespace scalpel::jinja
