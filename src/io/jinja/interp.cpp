// src/io/jinja/interp.cpp — statement execution and expression evaluation.
#include "io/jinja/interp.hpp"

#include <algorithm>
#include <deque>

namespace scalpel::jinja {

// ---------------------------------------------------------------------------
// Namespace

std::string Namespace::repr() const {
  // Python prints a dict that contains itself as {...}.
  if (in_repr_) return "<Namespace {...}>";
  in_repr_ = true;
  std::string out = "<Namespace {";
  try {
    bool first = true;
    for (const auto& e : attrs_.entries()) {
      if (!first) out += ", ";
      first = false;
      out += jinja::repr(e.first) + ": " + jinja::repr(e.second);
    }
  } catch (...) {
    in_repr_ = false;
    throw;
  }
  in_repr_ = false;
  return out + "}>";
}

void Namespace::clear() { attrs_ = DictData(); }

Namespace::~Namespace() {
  // Namespaces can chain without bound (ns.x = namespace(x=ns.x) in a loop);
  // destroying their attributes iteratively keeps the C++ stack flat.
  static thread_local std::vector<DictData> pending;
  static thread_local bool draining = false;
  pending.push_back(std::move(attrs_));
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    DictData d = std::move(pending.back());
    pending.pop_back();
  }  // d's values are released here; nested namespaces only queue theirs
  draining = false;
}

Value Namespace::getattr(const std::string& name) const {
  if (const Value* v = attrs_.find(Value::string(name))) return *v;
  return Value::undefined("'Namespace object' has no attribute '" + name + "'");
}

void Namespace::set(const std::string& name, const Value& v) {
  if (!name.empty() && name[0] == '_')
    fail(ErrKind::Security, "namespace attribute '" + name +
                                "': expected a name not starting with '_', got one (transformers refuses them)");
  attrs_.set(Value::string(name), v);
}

namespace {

// Thrown in constant-folding mode by expressions jinja2 cannot fold.
struct NotConstant {};

// ---------------------------------------------------------------------------
// Macros

class MacroObject : public Object {
 public:
  MacroObject(std::shared_ptr<const MacroDef> def, FramePtr closure)
      : def_(std::move(def)), closure_(std::move(closure)) {}
  std::string type_name() const override { return "Macro"; }
  std::string repr() const override { return "<Macro " + repr_string(def_->name) + ">"; }
  bool callable() const override { return true; }
  Value call(Interp& interp, CallArgs& args) const override {
    return interp.call_macro(def_, closure_, args);
  }
  Value getattr(const std::string& name) const override {
    if (name == "name") return Value::string(def_->name);
    if (name == "arguments") {
      std::vector<Value> names;
      for (const auto& p : def_->params) names.push_back(Value::string(p));
      return Value::tuple(std::move(names));
    }
    if (name == "catch_kwargs") return Value::boolean(def_->uses_kwargs);
    if (name == "catch_varargs") return Value::boolean(def_->uses_varargs);
    if (name == "caller") return Value::boolean(def_->uses_caller);
    return Object::getattr(name);
  }

 private:
  std::shared_ptr<const MacroDef> def_;
  FramePtr closure_;
};

// ---------------------------------------------------------------------------
// The loop variable (jinja2's LoopContext). Items are pulled lazily when the
// loop has an `if` filter, exactly as jinja2's generator-based loop does, so
// that loop.last / loop.length evaluate the filter of later items when (and
// only when) jinja2 would.

struct LoopState {
  std::vector<Value> src;
  size_t src_pos = 0;
  std::function<bool(const Value&)> accept;  // null: every item
  bool accept_alive = true;                  // false once the loop has ended
  std::deque<Value> ahead;                   // accepted, not yet yielded
  int64_t index0 = -1;
  Value current, before;
  bool has_changed = false;
  Value last_changed;

  bool pull() {
    while (src_pos < src.size()) {
      if (accept && !accept_alive)
        unsupported("reading the 'loop' object of a filtered loop after the loop ended");
      const Value& v = src[src_pos++];
      if (!accept || accept(v)) {
        ahead.push_back(v);
        return true;
      }
    }
    return false;
  }
  bool next(Value* out) {
    if (ahead.empty() && !pull()) return false;
    *out = ahead.front();
    ahead.pop_front();
    ++index0;
    before = current;
    current = *out;
    return true;
  }
  const Value* peek() {
    if (ahead.empty() && !pull()) return nullptr;
    return &ahead.front();
  }
  int64_t length() {
    while (pull()) {
    }
    return index0 + 1 + static_cast<int64_t>(ahead.size());
  }
};

class LoopObject : public Object {
 public:
  explicit LoopObject(std::shared_ptr<LoopState> st) : st_(std::move(st)) {}
  std::string type_name() const override { return "LoopContext"; }
  std::string repr() const override {
    return "<LoopContext " + std::to_string(st_->index0 + 1) + "/" + std::to_string(st_->length()) + ">";
  }
  int64_t len() const override { return st_->length(); }
  Value getattr(const std::string& name) const override {
    LoopState& s = *st_;
    if (name == "index0") return Value::integer(s.index0);
    if (name == "index") return Value::integer(s.index0 + 1);
    if (name == "first") return Value::boolean(s.index0 == 0);
    if (name == "last") return Value::boolean(s.peek() == nullptr);
    if (name == "length") return Value::integer(s.length());
    if (name == "revindex") return Value::integer(s.length() - s.index0);
    if (name == "revindex0") return Value::integer(s.length() - s.index0 - 1);
    if (name == "depth") return Value::integer(1);
    if (name == "depth0") return Value::integer(0);
    if (name == "previtem")
      return s.index0 == 0 ? Value::undefined("there is no previous item") : s.before;
    if (name == "nextitem") {
      const Value* n = s.peek();
      return n ? *n : Value::undefined("there is no next item");
    }
    if (name == "cycle") {
      auto st = st_;
      return Value::object(std::make_shared<Function>("cycle", [st](Interp&, CallArgs& a) {
        if (!a.kw.empty()) fail(ErrKind::Type, "loop.cycle() takes no keyword arguments");
        if (a.pos.empty()) fail(ErrKind::Type, "no items for cycling given");
        return a.pos[static_cast<size_t>(st->index0) % a.pos.size()];
      }));
    }
    if (name == "changed") {
      auto st = st_;
      return Value::object(std::make_shared<Function>("changed", [st](Interp&, CallArgs& a) {
        if (!a.kw.empty()) fail(ErrKind::Type, "loop.changed() takes no keyword arguments");
        Value now = Value::tuple(a.pos);
        if (st->has_changed && equals(st->last_changed, now)) return Value::boolean(false);
        st->has_changed = true;
        st->last_changed = now;
        return Value::boolean(true);
      }));
    }
    return Object::getattr(name);
  }

 private:
  std::shared_ptr<LoopState> st_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Interp

// Bounds the evaluation depth (C++ stack) and notes where an error happened.
class DepthGuard {
 public:
  explicit DepthGuard(Interp& in) : in_(in) {
    if (++in_.depth_ > kMaxDepth)
      fail(ErrKind::Limit, "nesting: expected at most " + std::to_string(kMaxDepth) +
                               " nested evaluations (recursion bound), got more");
  }
  ~DepthGuard() { --in_.depth_; }

 private:
  Interp& in_;
};

Interp::Interp(const Template& tpl, const DictData& context) : tpl_(tpl) {
  install_globals(globals_);
  root_ = std::make_shared<Frame>();
  for (const auto& e : context.entries())
    if (e.first.is_string()) root_->vars[e.first.str()] = e.second;
}

Interp::~Interp() {
  // Lock everything first so that clearing one scope or namespace does not
  // destroy another in the middle of the loop.
  std::vector<FramePtr> frames;
  for (auto& w : closures_)
    if (auto f = w.lock()) frames.push_back(std::move(f));
  std::vector<std::shared_ptr<Namespace>> spaces;
  for (auto& w : namespaces_)
    if (auto n = w.lock()) spaces.push_back(std::move(n));
  std::vector<std::unordered_map<std::string, Value>> dropped;
  for (auto& f : frames) dropped.push_back(std::move(f->vars));
  for (auto& n : spaces) n->clear();
  dropped.clear();
}

std::string Interp::render() {
  std::string out;
  out_ = &out;
  exec(tpl_.body, root_);
  return out;
}

void Interp::count_work(int64_t n) {
  work_ += n;
  if (work_ > kMaxIterations)
    fail(ErrKind::Limit, "work: expected at most " + std::to_string(kMaxIterations) +
                             " loop iterations / filtered items per render, got more");
}

void Interp::write(const std::string& text) {
  out_->append(text);
  if (out_->size() > kMaxOutputBytes)
    fail(ErrKind::Limit, "output: expected at most " + std::to_string(kMaxOutputBytes) + " bytes, got more");
}

Interp::Flow Interp::exec(const Body& body, const FramePtr& frame) {
  for (const auto& s : body) {
    const Flow f = exec_stmt(*s, frame);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

std::string Interp::capture(const Body& body, const FramePtr& frame, Flow* flow) {
  std::string buf;
  std::string* saved = out_;
  out_ = &buf;
  try {
    const Flow f = exec(body, frame);
    if (flow) *flow = f;
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buf;
}

Interp::Flow Interp::exec_stmt(const Stmt& s, const FramePtr& frame) {
  DepthGuard guard(*this);
  try {
    switch (s.kind) {
      case StmtKind::Text: write(s.text); break;
      case StmtKind::Print: write(to_str(eval(*s.expr, *frame))); break;
      case StmtKind::If:
        for (const auto& br : s.branches)
          if (truthy(eval(*br.first, *frame))) return exec(br.second, frame);
        return exec(s.else_body, frame);
      case StmtKind::For: return exec_for(s, frame);
      case StmtKind::Set: assign(s.target, eval(*s.expr, *frame), *frame); break;
      case StmtKind::SetBlock: {
        // The body runs inline in jinja2: a break/continue inside leaves the
        // block without assigning.
        auto inner = std::make_shared<Frame>();
        inner->parent = frame;
        Flow flow = Flow::Normal;
        Value v = Value::string(capture(s.body, inner, &flow));
        if (flow != Flow::Normal) return flow;
        if (s.filter) v = eval_filter(*s.filter, *frame, &v);
        assign(s.target, v, *frame);
        break;
      }
      case StmtKind::Macro:
        frame->vars[s.macro->name] = Value::object(std::make_shared<MacroObject>(s.macro, frame));
        closures_.push_back(frame);  // the scope now holds a macro that holds the scope
        break;
      case StmtKind::CallBlock: exec_call_block(s, frame); break;
      case StmtKind::FilterBlock: {
        auto inner = std::make_shared<Frame>();
        inner->parent = frame;
        Flow flow = Flow::Normal;
        Value v = Value::string(capture(s.body, inner, &flow));
        if (flow != Flow::Normal) return flow;  // left by break/continue: nothing is written
        write(to_str(eval_filter(*s.filter, *frame, &v)));
        break;
      }
      case StmtKind::With: {
        auto inner = std::make_shared<Frame>();
        inner->parent = frame;
        for (const auto& a : s.assignments) assign(a.first, eval(*a.second, *frame), *inner);
        return exec(s.body, inner);
      }
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
      case StmtKind::Scope: {
        auto inner = std::make_shared<Frame>();
        inner->parent = frame;
        exec(s.body, inner);
        break;
      }
    }
  } catch (EvalError& e) {
    if (!e.located) {
      e.pos = s.pos;
      e.located = true;
    }
    throw;
  }
  return Flow::Normal;
}

Interp::Flow Interp::exec_for(const Stmt& s, const FramePtr& frame) {
  auto st = std::make_shared<LoopState>();
  st->src = iterate(eval(*s.expr, *frame));
  if (s.loop_filter) {
    // The condition sees the loop target, not (yet) the new loop variable.
    st->accept = [this, &s, &frame](const Value& item) {
      count_work(1);
      auto probe = std::make_shared<Frame>();
      probe->parent = frame;
      assign(s.target, item, *probe);
      return truthy(eval(*s.loop_filter, *probe));
    };
  }
  const Value loop_value = Value::object(std::make_shared<LoopObject>(st));
  // jinja2 runs the else block unless some iteration ran its body to the end
  // (a body left by break or continue does not count).
  bool completed = false;
  Value item;
  try {
    while (st->next(&item)) {
      count_work(1);
      auto inner = std::make_shared<Frame>();
      inner->parent = frame;
      assign(s.target, item, *inner);
      inner->vars["loop"] = loop_value;
      const Flow f = exec(s.body, inner);
      if (f == Flow::Break) break;
      if (f == Flow::Normal) completed = true;
    }
  } catch (...) {
    st->accept_alive = false;
    throw;
  }
  st->accept_alive = false;
  if (!completed && !s.else_body.empty()) {
    auto inner = std::make_shared<Frame>();
    inner->parent = frame;
    return exec(s.else_body, inner);  // a break/continue here belongs to an enclosing loop
  }
  return Flow::Normal;
}

void Interp::exec_call_block(const Stmt& s, const FramePtr& frame) {
  const Expr& call = *s.expr;
  Value callee = eval(*call.a, *frame);
  CallArgs args;
  eval_args(call.args, *frame, args);
  for (const auto& kw : args.kw)
    if (kw.first == "caller") fail(ErrKind::Type, "call block: the macro call already passes 'caller'");
  args.kw.emplace_back("caller", Value::object(std::make_shared<MacroObject>(s.macro, frame)));
  write(to_str(this->call(callee, args)));
}

void Interp::assign(const Target& t, const Value& v, Frame& frame) {
  switch (t.kind) {
    case Target::Kind::Name: frame.vars[t.name] = v; return;
    case Target::Kind::Tuple: {
      std::vector<Value> items = iterate(v);
      if (items.size() < t.items.size())
        fail(ErrKind::Value, "not enough values to unpack (expected " + std::to_string(t.items.size()) +
                                 ", got " + std::to_string(items.size()) + ")");
      if (items.size() > t.items.size())
        fail(ErrKind::Value, "too many values to unpack (expected " + std::to_string(t.items.size()) + ")");
      for (size_t i = 0; i < items.size(); ++i) assign(t.items[i], items[i], frame);
      return;
    }
    case Target::Kind::NamespaceAttr: {
      Value ns = lookup(t.name, frame);
      if (!ns.is_object() || !ns.object().is_namespace())
        fail(ErrKind::Type, "set " + t.name + "." + t.attr +
                                ": expected a namespace() object, got " + type_name(ns) +
                                " (cannot assign attribute on non-namespace object)");
      static_cast<Namespace&>(ns.object()).set(t.attr, v);
      return;
    }
  }
}

Value Interp::lookup(const std::string& name, const Frame& frame) const {
  for (const Frame* f = &frame; f; f = f->parent.get()) {
    auto it = f->vars.find(name);
    if (it != f->vars.end()) return it->second;
  }
  auto it = globals_.find(name);
  if (it != globals_.end()) return it->second;
  return Value::undefined("'" + name + "' is undefined");
}

Value Interp::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) fail_undefined(callee);
  if (callee.is_object() && callee.object().callable()) return callee.object().call(*this, args);
  fail(ErrKind::Type, "'" + type_name(callee) + "' object is not callable");
}

Value Interp::call_macro(const std::shared_ptr<const MacroDef>& def, const FramePtr& closure, CallArgs& args) {
  struct MacroDepth {
    int& d;
    explicit MacroDepth(int& depth) : d(depth) {
      if (++d > kMaxMacroDepth)
        fail(ErrKind::Limit, "macro calls: expected at most " + std::to_string(kMaxMacroDepth) +
                                 " nested calls (recursion bound), got more");
    }
    ~MacroDepth() { --d; }
  } depth(macro_depth_);

  auto f = std::make_shared<Frame>();
  f->parent = closure;
  const size_t np = def->params.size();
  std::vector<bool> bound(np, false);
  std::vector<Value> extra_pos;
  for (size_t i = 0; i < args.pos.size(); ++i) {
    if (i < np) {
      f->vars[def->params[i]] = args.pos[i];
      bound[i] = true;
    } else {
      extra_pos.push_back(args.pos[i]);
    }
  }
  if (!extra_pos.empty() && !def->uses_varargs)
    fail(ErrKind::Type, "macro '" + def->name + "' takes not more than " + std::to_string(np) + " argument(s)");
  DictData extra_kw;
  Value caller = Value::undefined("No caller defined");
  for (const auto& kw : args.kw) {
    size_t idx = np;
    for (size_t i = 0; i < np; ++i)
      if (def->params[i] == kw.first) idx = i;
    if (idx < np) {
      if (bound[idx])
        fail(ErrKind::Type, "macro '" + def->name + "' got multiple values for argument '" + kw.first + "'");
      f->vars[kw.first] = kw.second;
      bound[idx] = true;
    } else if (kw.first == "caller" && def->uses_caller) {
      caller = kw.second;
    } else if (def->uses_kwargs) {
      extra_kw.set(Value::string(kw.first), kw.second);
    } else {
      fail(ErrKind::Type, "macro '" + def->name + "' takes no keyword argument '" + kw.first + "'");
    }
  }
  for (size_t i = 0; i < np; ++i) {
    if (bound[i]) continue;
    if (def->defaults[i])
      f->vars[def->params[i]] = eval(*def->defaults[i], *f);
    else
      f->vars[def->params[i]] = Value::undefined("parameter '" + def->params[i] + "' was not provided");
  }
  if (def->uses_caller) f->vars["caller"] = caller;
  if (def->uses_varargs) f->vars["varargs"] = Value::tuple(std::move(extra_pos));
  if (def->uses_kwargs) f->vars["kwargs"] = Value::dict(std::move(extra_kw));
  return Value::string(capture(def->body, f));
}

Value Interp::getattr(const Value& obj, const std::string& name) { return builtin_getattr(*this, obj, name); }
Value Interp::getitem(const Value& obj, const Value& key) { return builtin_getitem(*this, obj, key); }

// ---------------------------------------------------------------------------
// Constant folding

bool Interp::const_eval(const Expr& e, Value* out) {
  const bool saved = const_mode_;
  const_mode_ = true;
  Frame scratch;
  try {
    *out = eval(e, scratch);
    const_mode_ = saved;
    return true;
  } catch (const NotConstant&) {
  } catch (const EvalError&) {
  }
  const_mode_ = saved;
  return false;
}

namespace {

// jinja2's has_safe_repr: values the optimizer may bake into the template.
bool safe_repr(const Value& v) {
  switch (v.type()) {
    case Type::None:
    case Type::Bool:
    case Type::Int:
    case Type::Float:
    case Type::String: return true;
    case Type::Seq:
      if (v.seq().kind != SeqKind::List && v.seq().kind != SeqKind::Tuple) return false;
      for (const Value& x : v.items())
        if (!safe_repr(x)) return false;
      return true;
    case Type::Dict:
      for (const auto& e : v.dict().entries())
        if (!safe_repr(e.first) || !safe_repr(e.second)) return false;
      return true;
    default: return false;
  }
}

class Folder {
 public:
  explicit Folder(Template& t) : interp_(t, DictData()) {}

  void body(Body& b) {
    for (auto& s : b) stmt(s);
  }

 private:
  // Bottom-up, like jinja2's Optimizer.generic_visit.
  void expr(ExprPtr& e) {
    if (!e) return;
    for (auto& x : e->items) expr(x);
    for (auto& p : e->pairs) {
      expr(p.first);
      expr(p.second);
    }
    expr(e->a);
    expr(e->b);
    expr(e->c);
    for (auto& x : e->args.pos) expr(x);
    for (auto& x : e->args.kw) expr(x.second);
    expr(e->args.star);
    expr(e->args.starstar);
    for (auto& x : e->comparisons) expr(x.second);
    if (e->kind == ExprKind::Const || e->kind == ExprKind::Slice) return;
    Value v;
    if (interp_.const_eval(*e, &v) && safe_repr(v)) {
      auto c = std::make_unique<Expr>(ExprKind::Const, e->pos);
      c->value = std::move(v);
      e = std::move(c);
    }
  }

  void stmt(StmtPtr& s) {
    expr(s->expr);
    expr(s->loop_filter);
    expr(s->filter);
    for (auto& br : s->branches) {
      expr(br.first);
      body(br.second);
    }
    body(s->body);
    body(s->else_body);
    for (auto& a : s->assignments) expr(a.second);
    if (s->macro) {
      for (auto& d : s->macro->defaults) expr(d);
      body(s->macro->body);
    }
    if (s->kind == StmtKind::Print) {
      // A constant {{ }} becomes text (whatever the value's type).
      Value v;
      if (interp_.const_eval(*s->expr, &v)) {
        try {
          std::string text = to_str(v);
          auto t = std::make_unique<Stmt>(StmtKind::Text, s->pos);
          t->text = std::move(text);
          s = std::move(t);
        } catch (const EvalError&) {
        }
      }
    }
  }

  Interp interp_;
};

}  // namespace

void fold_constants(Template& tpl) { Folder(tpl).body(tpl.body); }

// ---------------------------------------------------------------------------
// Expressions

Value Interp::eval(const Expr& e, Frame& frame) {
  DepthGuard guard(*this);
  try {
    return eval_node(e, frame);
  } catch (EvalError& err) {
    if (!err.located) {
      err.pos = e.pos;
      err.located = true;
    }
    throw;
  }
}

void Interp::eval_args(const ArgList& a, Frame& frame, CallArgs& out) {
  for (const auto& p : a.pos) out.pos.push_back(eval(*p, frame));
  for (const auto& k : a.kw) out.kw.emplace_back(k.first, eval(*k.second, frame));
  if (a.star) {
    for (Value& v : iterate(eval(*a.star, frame))) out.pos.push_back(std::move(v));
  }
  if (a.starstar) {
    Value d = eval(*a.starstar, frame);
    if (!d.is_dict()) fail(ErrKind::Type, "argument after ** must be a mapping, not " + type_name(d));
    for (const auto& e : d.dict().entries()) {
      if (!e.first.is_string()) fail(ErrKind::Type, "keywords must be strings");
      for (const auto& k : out.kw)
        if (k.first == e.first.str())
          fail(ErrKind::Type, "got multiple values for keyword argument '" + k.first + "'");
      out.kw.emplace_back(e.first.str(), e.second);
    }
  }
}

Value Interp::eval_filter(const Expr& e, Frame& frame, const Value* block_input) {
  // In set/filter blocks the innermost filter applies to the block's text
  // (which does not exist yet while constant folding).
  if (!e.a && !block_input) throw NotConstant{};
  if (const_mode_ && (e.name == "map" || e.name == "select" || e.name == "reject" || e.name == "selectattr" ||
                      e.name == "rejectattr"))
    throw NotConstant{};  // jinja2 never folds @pass_context filters
  Value input = e.a ? (e.a->kind == ExprKind::Filter ? eval_filter(*e.a, frame, block_input) : eval(*e.a, frame))
                    : *block_input;
  CallArgs args;
  eval_args(e.args, frame, args);
  try {
    return call_filter(*this, e.name, input, args);
  } catch (EvalError& err) {
    if (!err.located) {
      err.pos = e.pos;
      err.located = true;
    }
    throw;
  }
}

Value Interp::eval_compare(const Expr& e, Frame& frame) {
  Value left = eval(*e.a, frame);
  for (const auto& op : e.comparisons) {
    Value right = eval(*op.second, frame);
    bool ok = false;
    switch (op.first) {
      case CmpOp::Eq: ok = equals(left, right); break;
      case CmpOp::Ne: ok = !equals(left, right); break;
      case CmpOp::Lt: ok = compare(left, right, "<") == -1; break;
      case CmpOp::Le: {
        const int c = compare(left, right, "<=");
        ok = c == -1 || c == 0;
        break;
      }
      case CmpOp::Gt: ok = compare(left, right, ">") == 1; break;
      case CmpOp::Ge: {
        const int c = compare(left, right, ">=");
        ok = c == 1 || c == 0;
        break;
      }
      case CmpOp::In: ok = contains(right, left); break;
      case CmpOp::NotIn: ok = !contains(right, left); break;
    }
    if (!ok) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interp::eval_node(const Expr& e, Frame& frame) {
  switch (e.kind) {
    case ExprKind::Const: return e.value;
    case ExprKind::Name:
      if (const_mode_) throw NotConstant{};
      return lookup(e.name, frame);
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.items.size());
      for (const auto& x : e.items) items.push_back(eval(*x, frame));
      return e.kind == ExprKind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case ExprKind::Dict: {
      DictData d;
      for (const auto& p : e.pairs) {
        Value k = eval(*p.first, frame);
        Value v = eval(*p.second, frame);
        d.set(k, v);
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::GetAttr: {
      Value obj = eval(*e.a, frame);
      return getattr(obj, e.name);
    }
    case ExprKind::GetItem: {
      Value obj = eval(*e.a, frame);
      const Expr& key = *e.b;
      if (key.kind == ExprKind::Slice) {
        Value parts[3];
        for (int i = 0; i < 3; ++i)
          parts[i] = key.items[static_cast<size_t>(i)] ? eval(*key.items[static_cast<size_t>(i)], frame) : Value::none();
        if (!const_mode_) return slice_value(obj, parts[0], parts[1], parts[2]);
        // Folded at compile time through the sandbox's getitem, which turns
        // a TypeError into an undefined value.
        try {
          return slice_value(obj, parts[0], parts[1], parts[2]);
        } catch (EvalError& err) {
          if (err.kind != ErrKind::Type) throw;
          return Value::undefined("'" + type_name(obj) + " object' has no element slice");
        }
      }
      Value k = eval(key, frame);
      return getitem(obj, k);
    }
    case ExprKind::Slice: fail(ErrKind::Type, "a slice is only valid inside []");
    case ExprKind::Call: {
      if (const_mode_) throw NotConstant{};
      Value callee = eval(*e.a, frame);
      CallArgs args;
      eval_args(e.args, frame, args);
      return call(callee, args);
    }
    case ExprKind::Filter: return eval_filter(e, frame, nullptr);
    case ExprKind::Test: {
      Value v = eval(*e.a, frame);
      CallArgs args;
      eval_args(e.args, frame, args);
      return Value::boolean(call_test(*this, e.name, v, args));
    }
    case ExprKind::Unary: {
      Value v = eval(*e.a, frame);
      if (e.unary_op == UnaryOp::Not) return Value::boolean(!truthy(v));
      return unary_op(e.unary_op, v);
    }
    case ExprKind::Binary: {
      Value l = eval(*e.a, frame);
      if (e.binary_op == BinaryOp::And) return truthy(l) ? eval(*e.b, frame) : l;
      if (e.binary_op == BinaryOp::Or) return truthy(l) ? l : eval(*e.b, frame);
      Value r = eval(*e.b, frame);
      Value result = binary_op(e.binary_op, l, r);
      if (result.is_string() && result.str().size() > kMaxOutputBytes)
        fail(ErrKind::Limit, "string: expected at most " + std::to_string(kMaxOutputBytes) + " bytes, got more");
      return result;
    }
    case ExprKind::Concat: {
      std::string s;
      for (const auto& x : e.items) {
        s += to_str(eval(*x, frame));
        if (s.size() > kMaxOutputBytes)
          fail(ErrKind::Limit, "string: expected at most " + std::to_string(kMaxOutputBytes) + " bytes, got more");
      }
      return Value::string(std::move(s));
    }
    case ExprKind::Compare: return eval_compare(e, frame);
    case ExprKind::Cond:
      if (truthy(eval(*e.b, frame))) return eval(*e.a, frame);
      if (e.c) return eval(*e.c, frame);
      if (const_mode_) throw NotConstant{};
      return Value::undefined("the inline if-expression on line " + std::to_string(tpl_.map->line(e.pos)) +
                              " evaluated to false and no else section was defined.");
  }
  return Value();
}

}  // namespace scalpel::jinja
