// src/io/jinja/ops.cpp — Python operators on template values: arithmetic,
// string/list concatenation and repetition, `in`, slicing.
#include <cmath>

#include "io/jinja/interp.hpp"
#include "io/jinja/unicode.hpp"

namespace scalpel::jinja {
namespace {

const char* op_symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "+";
    case BinaryOp::Sub: return "-";
    case BinaryOp::Mul: return "*";
    case BinaryOp::Div: return "/";
    case BinaryOp::FloorDiv: return "//";
    case BinaryOp::Mod: return "%";
    case BinaryOp::Pow: return "** or pow()";
    case BinaryOp::And: return "and";
    case BinaryOp::Or: return "or";
  }
  return "?";
}

[[noreturn]] void unsupported_operands(BinaryOp op, const Value& a, const Value& b) {
  fail(ErrKind::Type, std::string("unsupported operand type(s) for ") + op_symbol(op) + ": '" + type_name(a) +
                          "' and '" + type_name(b) + "'");
}

// CPython's float floor division and modulo (float_divmod).
void float_divmod(double vx, double wx, double* floordiv, double* mod) {
  double m = std::fmod(vx, wx);
  double div = (vx - m) / wx;
  if (m != 0.0) {
    if ((wx < 0) != (m < 0)) {
      m += wx;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, wx);
  }
  double fd;
  if (div != 0.0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, vx / wx);
  }
  *floordiv = fd;
  *mod = m;
}

int64_t int_floordiv(int64_t a, int64_t b) {
  if (b == -1) return checked_sub(0, a);
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t int_mod(int64_t a, int64_t b) {
  if (b == -1) return 0;
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

Value repeat(const Value& seq, int64_t n) {
  if (n <= 0) return seq.is_string() ? Value::string("", seq.markup()) : Value::seq(seq.seq().kind, {});
  if (seq.is_string()) {
    const std::string& s = seq.str();
    if (!s.empty() && static_cast<uint64_t>(n) > kMaxOutputBytes / s.size())
      fail(ErrKind::Limit, "string repetition: expected a result of at most " + std::to_string(kMaxOutputBytes) +
                               " bytes, got more");
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value::string(std::move(out), seq.markup());
  }
  const auto& items = seq.items();
  if (!items.empty() && static_cast<uint64_t>(n) > kMaxItems / items.size())
    fail(ErrKind::Limit, "list repetition: expected a result of at most " + std::to_string(kMaxItems) +
                             " items, got more");
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::seq(seq.seq().kind, std::move(out));
}

bool is_repeatable(const Value& v) {
  return v.is_string() || (v.is_seq() && (v.seq().kind == SeqKind::List || v.seq().kind == SeqKind::Tuple));
}

Value int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  int64_t b = base;
  while (exp > 0) {
    if (exp & 1) result = checked_mul(result, b);
    exp >>= 1;
    if (exp) b = checked_mul(b, b);
  }
  return Value::integer(result);
}

}  // namespace

Value binary_op(BinaryOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  // str % x formats x whatever it is (Python calls str.__mod__ first).
  if (op == BinaryOp::Mod && a.is_string()) {
    if (a.markup()) unsupported("'%' formatting of a Markup value (markupsafe escapes the arguments)");
    return Value::string(percent_format(a.str(), b));
  }
  if (b.is_undefined()) fail_undefined(b);
  const bool nums = a.is_number() && b.is_number();
  const bool ints = a.is_integral() && b.is_integral();
  switch (op) {
    case BinaryOp::Add:
      if (ints) return Value::integer(checked_add(a.as_int(), b.as_int()));
      if (nums) return Value::real(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        // markupsafe: Markup + str escapes the str (and str + Markup too).
        if (a.markup() && !b.markup()) return Value::string(a.str() + pystr::html_escape(b.str()), true);
        if (b.markup() && !a.markup()) return Value::string(pystr::html_escape(a.str()) + b.str(), true);
        return Value::string(a.str() + b.str(), a.markup());
      }
      if (a.is_string())
        fail(ErrKind::Type, "can only concatenate str (not \"" + type_name(b) + "\") to str");
      if (a.is_seq() && b.is_seq() && a.seq().kind == b.seq().kind &&
          (a.seq().kind == SeqKind::List || a.seq().kind == SeqKind::Tuple)) {
        if (a.items().size() + b.items().size() > kMaxItems)
          fail(ErrKind::Limit, "list concatenation: expected at most " + std::to_string(kMaxItems) + " items, got more");
        std::vector<Value> items = a.items();
        items.insert(items.end(), b.items().begin(), b.items().end());
        return Value::seq(a.seq().kind, std::move(items));
      }
      if (a.is_list() || a.is_tuple())
        fail(ErrKind::Type, "can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " +
                                type_name(a));
      unsupported_operands(op, a, b);
    case BinaryOp::Sub:
      if (ints) return Value::integer(checked_sub(a.as_int(), b.as_int()));
      if (nums) return Value::real(a.as_double() - b.as_double());
      unsupported_operands(op, a, b);
    case BinaryOp::Mul:
      if (ints) return Value::integer(checked_mul(a.as_int(), b.as_int()));
      if (nums) return Value::real(a.as_double() * b.as_double());
      if (is_repeatable(a) && b.is_integral()) return repeat(a, b.as_int());
      if (a.is_integral() && is_repeatable(b)) return repeat(b, a.as_int());
      if (is_repeatable(a) || is_repeatable(b))
        fail(ErrKind::Type, "can't multiply sequence by non-int of type '" + type_name(is_repeatable(a) ? b : a) + "'");
      unsupported_operands(op, a, b);
    case BinaryOp::Div:
      if (nums) {
        if (b.as_double() == 0.0) fail(ErrKind::Value, "division by zero");
        return Value::real(a.as_double() / b.as_double());
      }
      unsupported_operands(op, a, b);
    case BinaryOp::FloorDiv:
      if (ints) {
        if (b.as_int() == 0) fail(ErrKind::Value, "integer division or modulo by zero");
        return Value::integer(int_floordiv(a.as_int(), b.as_int()));
      }
      if (nums) {
        if (b.as_double() == 0.0) fail(ErrKind::Value, "float floor division by zero");
        double fd, m;
        float_divmod(a.as_double(), b.as_double(), &fd, &m);
        return Value::real(fd);
      }
      unsupported_operands(op, a, b);
    case BinaryOp::Mod:
      if (ints) {
        if (b.as_int() == 0) fail(ErrKind::Value, "integer division or modulo by zero");
        return Value::integer(int_mod(a.as_int(), b.as_int()));
      }
      if (nums) {
        if (b.as_double() == 0.0) fail(ErrKind::Value, "float modulo");
        double fd, m;
        float_divmod(a.as_double(), b.as_double(), &fd, &m);
        return Value::real(m);
      }
      unsupported_operands(op, a, b);
    case BinaryOp::Pow:
      if (ints && b.as_int() >= 0) return int_pow(a.as_int(), b.as_int());
      if (nums) {
        const double x = a.as_double(), y = b.as_double();
        if (x == 0.0 && y < 0) fail(ErrKind::Value, "0.0 cannot be raised to a negative power");
        if (x < 0 && y != std::floor(y))
          unsupported("raising a negative number to a fractional power (Python gives a complex number)");
        const double r = std::pow(x, y);
        if (std::isinf(r) && std::isfinite(x) && std::isfinite(y))
          fail(ErrKind::Value, "(34, 'Numerical result out of range')");
        return Value::real(r);
      }
      unsupported_operands(op, a, b);
    case BinaryOp::And:
    case BinaryOp::Or: break;
  }
  unsupported_operands(op, a, b);
}

Value unary_op(UnaryOp op, const Value& a) {
  if (a.is_undefined()) fail_undefined(a);
  switch (op) {
    case UnaryOp::Neg:
      if (a.is_integral()) return Value::integer(checked_sub(0, a.as_int()));
      if (a.is_float()) return Value::real(-a.as_double());
      fail(ErrKind::Type, "bad operand type for unary -: '" + type_name(a) + "'");
    case UnaryOp::Pos:
      if (a.is_integral()) return Value::integer(a.as_int());
      if (a.is_float()) return a;
      fail(ErrKind::Type, "bad operand type for unary +: '" + type_name(a) + "'");
    case UnaryOp::Not: return Value::boolean(!truthy(a));
  }
  return a;
}

bool contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Type::Undefined: return false;  // iterates as empty
    case Type::String:
      if (!item.is_string())
        fail(ErrKind::Type, "'in <string>' requires string as left operand, not " + type_name(item));
      return container.str().find(item.str()) != std::string::npos;
    case Type::Seq:
      for (const Value& v : container.items())
        if (equals(v, item)) return true;
      return false;
    case Type::Dict: return container.dict().find(item) != nullptr;
    case Type::Iter: {
      IterData& it = container.iter();
      if (!it.pending_error.empty()) fail(ErrKind::Type, it.pending_error);
      while (it.pos < it.items.size())
        if (equals(it.items[it.pos++], item)) return true;
      return false;
    }
    default: break;
  }
  fail(ErrKind::Type, "argument of type '" + type_name(container) + "' is not iterable");
}

// ---------------------------------------------------------------------------
// Slicing

namespace {

// Python's PySlice_GetIndices + PySlice_AdjustIndices.
void slice_indices(int64_t len, const Value& start, const Value& stop, const Value& step, int64_t* out_start,
                   int64_t* out_stop, int64_t* out_step) {
  auto index_of = [](const Value& v) -> int64_t {
    if (!v.is_integral())
      fail(ErrKind::Type, "slice indices must be integers or None or have an __index__ method");
    return v.as_int();
  };
  int64_t st = step.is_none() ? 1 : index_of(step);
  if (st == 0) fail(ErrKind::Value, "slice step cannot be zero");
  const int64_t lower = st > 0 ? 0 : -1;
  const int64_t upper = st > 0 ? len : len - 1;
  auto adjust = [&](const Value& v, int64_t dflt) -> int64_t {
    if (v.is_none()) return dflt;
    int64_t i = index_of(v);
    if (i < 0) {
      i += len;
      if (i < lower) i = lower;
    } else if (i > upper) {
      i = upper;
    }
    return i;
  };
  *out_start = adjust(start, st > 0 ? lower : upper);
  *out_stop = adjust(stop, st > 0 ? upper : lower);
  *out_step = st;
}

template <typename F>
void for_slice(int64_t start, int64_t stop, int64_t step, F f) {
  if (step > 0)
    for (int64_t i = start; i < stop; i += step) f(i);
  else
    for (int64_t i = start; i > stop; i += step) f(i);
}

}  // namespace

Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  // jinja2 compiles obj[a:b:c] to a plain Python subscript (no sandbox
  // getitem), so errors propagate instead of giving Undefined.
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_string()) {
    const std::string& s = obj.str();
    if (uni::is_ascii(s)) {
      int64_t a, b, c;
      slice_indices(static_cast<int64_t>(s.size()), start, stop, step, &a, &b, &c);
      std::string out;
      for_slice(a, b, c, [&](int64_t i) { out.push_back(s[static_cast<size_t>(i)]); });
      return Value::string(std::move(out), obj.markup());
    }
    const std::u32string u = uni::decode(s);
    int64_t a, b, c;
    slice_indices(static_cast<int64_t>(u.size()), start, stop, step, &a, &b, &c);
    std::u32string out;
    for_slice(a, b, c, [&](int64_t i) { out.push_back(u[static_cast<size_t>(i)]); });
    return Value::string(uni::encode(out), obj.markup());
  }
  if (obj.is_seq() && (obj.seq().kind == SeqKind::List || obj.seq().kind == SeqKind::Tuple ||
                       obj.seq().kind == SeqKind::Range)) {
    const auto& items = obj.items();
    int64_t a, b, c;
    slice_indices(static_cast<int64_t>(items.size()), start, stop, step, &a, &b, &c);
    if (obj.seq().kind == SeqKind::Range) {
      const SeqData& r = obj.seq();
      return Value::range(r.start + a * r.step, r.start + b * r.step, r.step * c);
    }
    std::vector<Value> out;
    for_slice(a, b, c, [&](int64_t i) { out.push_back(items[static_cast<size_t>(i)]); });
    return Value::seq(obj.seq().kind, std::move(out));
  }
  if (obj.is_dict()) fail(ErrKind::Type, "unhashable type: 'slice'");
  fail(ErrKind::Type, "'" + type_name(obj) + "' object is not subscriptable");
}

}  // namespace scalpel::jinja
