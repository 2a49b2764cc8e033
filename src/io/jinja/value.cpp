// src/io/jinja/value.cpp — Python semantics of chat-template values.
#include "io/jinja/value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "io/jinja/unicode.hpp"

namespace scalpel::jinja {

void fail(ErrKind kind, std::string message) { throw EvalError{kind, std::move(message)}; }

void unsupported(const std::string& what) {
  fail(ErrKind::Unsupported,
       what + " is outside the chat-template subset scalpel implements (see docs/chat_templates.md)");
}

void fail_undefined(const Value& v) { fail(v.undefined_error(), v.undefined_hint()); }

// ---------------------------------------------------------------------------
// Object defaults

std::string Object::repr() const {
  unsupported("printing a '" + type_name() + "' object (Python prints its memory address)");
}
Value Object::getattr(const std::string& name) const {
  return Value::undefined("'" + type_name() + " object' has no attribute '" + name + "'");
}
Value Object::call(Interp&, CallArgs&) const {
  fail(ErrKind::Type, "'" + type_name() + "' object is not callable");
}

// ---------------------------------------------------------------------------
// Construction

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.p_ = std::make_shared<std::string>(std::move(hint));
  return v;
}
Value Value::unsafe_undefined(std::string hint) {
  Value v = undefined(std::move(hint));
  v.b_ = true;
  return v;
}
Value Value::none() {
  Value v;
  v.type_ = Type::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::Int;
  v.i_ = i;
  return v;
}
Value Value::real(double d) {
  Value v;
  v.type_ = Type::Float;
  v.f_ = d;
  return v;
}
Value Value::string(std::string s, bool markup) {
  Value v;
  v.type_ = Type::String;
  v.markup_ = markup;
  v.p_ = std::make_shared<std::string>(std::move(s));
  return v;
}
namespace {

// Nesting depth of containers inside v (0 for scalars and objects).
int container_depth(const Value& v) {
  if (v.is_seq()) return v.seq().depth;
  if (v.is_dict()) return v.dict().depth();
  return 0;
}

int check_depth(int d) {
  if (d > kMaxValueDepth)
    fail(ErrKind::Limit, "value nesting: expected lists/dicts nested at most " + std::to_string(kMaxValueDepth) +
                             " levels deep, got more");
  return d;
}

}  // namespace

Value Value::seq(SeqKind kind, std::vector<Value> items) {
  Value v;
  v.type_ = Type::Seq;
  auto data = std::make_shared<SeqData>();
  data->kind = kind;
  int depth = 0;
  for (const Value& x : items) depth = std::max(depth, container_depth(x));
  data->depth = check_depth(depth + 1);
  data->items = std::move(items);
  v.p_ = std::move(data);
  return v;
}
Value Value::range(int64_t start, int64_t stop, int64_t step) {
  std::vector<Value> items;
  if (step > 0)
    for (int64_t i = start; i < stop; i += step) items.push_back(integer(i));
  else
    for (int64_t i = start; i > stop; i += step) items.push_back(integer(i));
  Value v = seq(SeqKind::Range, std::move(items));
  auto* data = static_cast<SeqData*>(v.p_.get());
  data->start = start;
  data->stop = stop;
  data->step = step;
  return v;
}
Value Value::dict(DictData d) {
  int depth = 0;
  for (const auto& e : d.entries()) depth = std::max({depth, container_depth(e.first), container_depth(e.second)});
  d.set_depth(check_depth(depth + 1));
  Value v;
  v.type_ = Type::Dict;
  v.p_ = std::make_shared<DictData>(std::move(d));
  return v;
}
Value Value::iter(std::vector<Value> items, std::string type_name) {
  Value v;
  v.type_ = Type::Iter;
  auto data = std::make_shared<IterData>();
  data->items = std::move(items);
  data->type_name = std::move(type_name);
  v.p_ = std::move(data);
  return v;
}
Value Value::object(std::shared_ptr<Object> obj) {
  Value v;
  v.type_ = Type::Object;
  v.p_ = std::move(obj);
  return v;
}

std::string Value::undefined_hint() const {
  if (type_ == Type::Undefined && p_) return *static_cast<const std::string*>(p_.get());
  return "value is undefined";
}

// ---------------------------------------------------------------------------
// DictData

const Value* DictData::find(const Value& key) const {
  const size_t h = hash_value(key);
  auto range = index_.equal_range(h);
  for (auto it = range.first; it != range.second; ++it) {
    const auto& entry = entries_[it->second];
    if (equals(entry.first, key)) return &entry.second;
  }
  return nullptr;
}

void DictData::set(const Value& key, const Value& value) {
  const size_t h = hash_value(key);
  auto range = index_.equal_range(h);
  for (auto it = range.first; it != range.second; ++it) {
    auto& entry = entries_[it->second];
    if (equals(entry.first, key)) {
      entry.second = value;  // Python keeps the original key and position
      return;
    }
  }
  index_.emplace(h, entries_.size());
  entries_.emplace_back(key, value);
}

// ---------------------------------------------------------------------------
// Type names, truthiness, length, iteration

std::string type_name(const Value& v) {
  switch (v.type()) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "NoneType";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return v.markup() ? "Markup" : "str";
    case Type::Seq:
      switch (v.seq().kind) {
        case SeqKind::List: return "list";
        case SeqKind::Tuple: return "tuple";
        case SeqKind::Range: return "range";
        case SeqKind::DictKeys: return "dict_keys";
        case SeqKind::DictValues: return "dict_values";
        case SeqKind::DictItems: return "dict_items";
      }
      break;
    case Type::Dict: return "dict";
    case Type::Iter: return v.iter().type_name;
    case Type::Object: return v.object().type_name();
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.type()) {
    case Type::Undefined:
    case Type::None: return false;
    case Type::Bool: return v.as_bool();
    case Type::Int: return v.as_int() != 0;
    case Type::Float: return v.as_double() != 0.0;
    case Type::String: return !v.str().empty();
    case Type::Seq: return !v.items().empty();
    case Type::Dict: return v.dict().size() != 0;
    case Type::Iter: return true;
    case Type::Object: return v.object().truthy();
  }
  return false;
}

int64_t length(const Value& v) {
  switch (v.type()) {
    case Type::Undefined: return 0;
    case Type::String: return static_cast<int64_t>(uni::length(v.str()));
    case Type::Seq: return static_cast<int64_t>(v.items().size());
    case Type::Dict: return static_cast<int64_t>(v.dict().size());
    default: break;
  }
  fail(ErrKind::Type, "object of type '" + type_name(v) + "' has no len()");
}

bool is_iterable(const Value& v) {
  switch (v.type()) {
    case Type::Undefined:
    case Type::String:
    case Type::Seq:
    case Type::Dict:
    case Type::Iter: return true;
    default: return false;
  }
}

std::vector<Value> iterate(const Value& v) {
  switch (v.type()) {
    case Type::Undefined: return {};
    case Type::String: {
      std::vector<Value> out;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        size_t j = i + 1;
        while (j < s.size() && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) ++j;
        out.push_back(Value::string(s.substr(i, j - i)));
        i = j;
      }
      return out;
    }
    case Type::Seq: return v.items();
    case Type::Dict: {
      std::vector<Value> out;
      out.reserve(v.dict().size());
      for (const auto& e : v.dict().entries()) out.push_back(e.first);
      return out;
    }
    case Type::Iter: {
      IterData& it = v.iter();
      if (!it.pending_error.empty()) fail(ErrKind::Type, it.pending_error);
      std::vector<Value> out(it.items.begin() + static_cast<std::ptrdiff_t>(it.pos), it.items.end());
      it.pos = it.items.size();
      return out;
    }
    default: break;
  }
  fail(ErrKind::Type, "'" + type_name(v) + "' object is not iterable");
}

// ---------------------------------------------------------------------------
// str() and repr()

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, as Python's repr picks them.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string out;
  size_t p = 0;
  if (sci[0] == '-') {
    out.push_back('-');
    p = 1;
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = p; i < e; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  const int exponent = std::atoi(sci.c_str() + e + 1);
  const int decpt = exponent + 1;  // value = 0.DIGITS * 10^decpt
  const int n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (n > 1) out += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += ebuf;
  } else if (decpt <= 0) {
    out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (decpt >= n) {
    out += digits + std::string(static_cast<size_t>(decpt - n), '0') + ".0";
  } else {
    out += digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  }
  return out;
}

std::string repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : uni::decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !uni::is_printable(c))) {
      uni::append_python_escape(out, c);
    } else {
      uni::append(out, c);
    }
  }
  out.push_back(quote);
  return out;
}

namespace {

std::string join_repr(const std::vector<Value>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += repr(items[i]);
  }
  return out;
}

std::string dict_repr(const DictData& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& e : d.entries()) {
    if (!first) out += ", ";
    first = false;
    out += repr(e.first) + ": " + repr(e.second);
  }
  return out + "}";
}

}  // namespace

std::string repr(const Value& v) {
  // Containers are depth-bounded, but namespaces can chain without bound.
  static thread_local int depth = 0;
  struct Guard {
    Guard() {
      if (++depth > 2 * kMaxValueDepth)
        fail(ErrKind::Limit, "repr: expected values nested at most " + std::to_string(2 * kMaxValueDepth) +
                                 " levels deep, got more");
    }
    ~Guard() { --depth; }
  } guard;
  switch (v.type()) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "None";
    case Type::Bool: return v.as_bool() ? "True" : "False";
    case Type::Int: return std::to_string(v.as_int());
    case Type::Float: return float_repr(v.as_double());
    case Type::String: return v.markup() ? "Markup(" + repr_string(v.str()) + ")" : repr_string(v.str());
    case Type::Seq: {
      const SeqData& s = v.seq();
      switch (s.kind) {
        case SeqKind::List: return "[" + join_repr(s.items) + "]";
        case SeqKind::Tuple:
          return "(" + join_repr(s.items) + (s.items.size() == 1 ? ",)" : ")");
        case SeqKind::Range:
          return "range(" + std::to_string(s.start) + ", " + std::to_string(s.stop) +
                 (s.step != 1 ? ", " + std::to_string(s.step) : "") + ")";
        case SeqKind::DictKeys: return "dict_keys([" + join_repr(s.items) + "])";
        case SeqKind::DictValues: return "dict_values([" + join_repr(s.items) + "])";
        case SeqKind::DictItems: return "dict_items([" + join_repr(s.items) + "])";
      }
      break;
    }
    case Type::Dict: return dict_repr(v.dict());
    case Type::Iter:
      unsupported("printing a '" + v.iter().type_name +
                  "' object (Python prints its memory address; convert it with |list)");
    case Type::Object: return v.object().repr();
  }
  return "";
}

std::string to_str(const Value& v) {
  switch (v.type()) {
    case Type::Undefined: return "";
    case Type::String: return v.str();
    default: return repr(v);
  }
}

// ---------------------------------------------------------------------------
// Equality, ordering, hashing

namespace {

// Exact comparison of a 64-bit integer with a double (long double holds every
// int64 exactly on the platforms scalpel targets; NaN compares unordered).
int compare_int_double(int64_t i, double d, bool* unordered) {
  if (std::isnan(d)) {
    *unordered = true;
    return 0;
  }
  const long double li = static_cast<long double>(i);
  const long double ld = static_cast<long double>(d);
  return li < ld ? -1 : li > ld ? 1 : 0;
}

// Numeric three-way comparison; *unordered set for NaN.
int compare_numbers(const Value& a, const Value& b, bool* unordered) {
  *unordered = false;
  if (a.is_integral() && b.is_integral()) {
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_integral()) return compare_int_double(a.as_int(), b.as_double(), unordered);
  if (b.is_integral()) return -compare_int_double(b.as_int(), a.as_double(), unordered);
  const double x = a.as_double(), y = b.as_double();
  if (std::isnan(x) || std::isnan(y)) {
    *unordered = true;
    return 0;
  }
  return x < y ? -1 : x > y ? 1 : 0;
}

bool same_elements_unordered(const std::vector<Value>& a, const std::vector<Value>& b) {
  if (a.size() != b.size()) return false;
  std::vector<bool> used(b.size(), false);
  for (const Value& x : a) {
    bool found = false;
    for (size_t j = 0; j < b.size(); ++j) {
      if (!used[j] && equals(x, b[j])) {
        used[j] = found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}

}  // namespace

bool equals(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_number() && b.is_number()) {
    bool unordered = false;
    return compare_numbers(a, b, &unordered) == 0 && !unordered;
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Type::None: return true;
    case Type::String: return a.str() == b.str();
    case Type::Seq: {
      const SeqData& x = a.seq();
      const SeqData& y = b.seq();
      if (x.kind != y.kind) return false;
      if (x.kind == SeqKind::DictValues) return a.identity() == b.identity();
      if (x.kind == SeqKind::DictKeys || x.kind == SeqKind::DictItems)
        return same_elements_unordered(x.items, y.items);
      if (x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals(x.items[i], y.items[i])) return false;
      return true;
    }
    case Type::Dict: {
      const DictData& x = a.dict();
      const DictData& y = b.dict();
      if (x.size() != y.size()) return false;
      for (const auto& e : x.entries()) {
        const Value* other = y.find(e.first);
        if (!other || !equals(e.second, *other)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

int compare(const Value& a, const Value& b, const char* op) {
  if (a.is_undefined() || b.is_undefined())
    fail_undefined(a.is_undefined() ? a : b);
  if (a.is_number() && b.is_number()) {
    bool unordered = false;
    const int c = compare_numbers(a, b, &unordered);
    // Every ordering comparison with NaN is false; report "incomparable" as
    // a value that makes <, <=, >, >= all false is impossible with one int,
    // so callers treat 2 as "unordered".
    return unordered ? 2 : c;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_seq() && b.is_seq() && a.seq().kind == b.seq().kind &&
      (a.seq().kind == SeqKind::List || a.seq().kind == SeqKind::Tuple)) {
    const auto& x = a.items();
    const auto& y = b.items();
    const size_t n = std::min(x.size(), y.size());
    for (size_t i = 0; i < n; ++i) {
      if (!equals(x[i], y[i])) return compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  fail(ErrKind::Type, std::string("'") + op + "' not supported between instances of '" +
                          type_name(a) + "' and '" + type_name(b) + "'");
}

size_t hash_value(const Value& v) {
  switch (v.type()) {
    case Type::Undefined: return 0x5bd1e995u;
    case Type::None: return 0x9e3779b9u;
    case Type::Bool:
    case Type::Int: return std::hash<int64_t>()(v.as_int());
    case Type::Float: {
      const double d = v.as_double();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18)
        return std::hash<int64_t>()(static_cast<int64_t>(d));
      return std::hash<double>()(d);
    }
    case Type::String: return std::hash<std::string>()(v.str());
    case Type::Seq:
      if (v.seq().kind == SeqKind::Tuple || v.seq().kind == SeqKind::Range) {
        size_t h = 0x345678u;
        for (const Value& x : v.items()) h = h * 1000003u ^ hash_value(x);
        return h;
      }
      break;
    case Type::Object: return std::hash<const void*>()(v.identity());
    default: break;
  }
  fail(ErrKind::Type, "unhashable type: '" + type_name(v) + "'");
}

// ---------------------------------------------------------------------------
// json.dumps

namespace {

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : uni::decode(s)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default: {
        char buf[16];
        if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                          static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
          } else {
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          }
          out += buf;
        } else {
          uni::append(out, c);
        }
      }
    }
  }
  out.push_back('"');
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return float_repr(d);
}

void json_value(std::string& out, const Value& v, const JsonOptions& o, int level, int depth);

void json_newline(std::string& out, const JsonOptions& o, int level) {
  out.push_back('\n');
  for (int i = 0; i < level; ++i) out += o.indent;
}

std::string json_key(const Value& k) {
  switch (k.type()) {
    case Type::String: return k.str();
    case Type::Float: return json_float(k.as_double());
    case Type::Bool: return k.as_bool() ? "true" : "false";
    case Type::None: return "null";
    case Type::Int: return std::to_string(k.as_int());
    default:
      fail(ErrKind::Type, "keys must be str, int, float, bool or None, not " + type_name(k));
  }
}

void json_value(std::string& out, const Value& v, const JsonOptions& o, int level, int depth) {
  if (depth > 200) fail(ErrKind::Limit, "tojson: nesting deeper than 200 levels");
  switch (v.type()) {
    case Type::None: out += "null"; return;
    case Type::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Type::Int: out += std::to_string(v.as_int()); return;
    case Type::Float: out += json_float(v.as_double()); return;
    case Type::String: json_string(out, v.str(), o.ensure_ascii); return;
    case Type::Seq: {
      const SeqData& s = v.seq();
      if (s.kind != SeqKind::List && s.kind != SeqKind::Tuple) break;
      if (s.items.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      if (o.pretty) json_newline(out, o, level + 1);
      for (size_t i = 0; i < s.items.size(); ++i) {
        if (i) {
          out += o.item_separator;
          if (o.pretty) json_newline(out, o, level + 1);
        }
        json_value(out, s.items[i], o, level + 1, depth + 1);
      }
      if (o.pretty) json_newline(out, o, level);
      out.push_back(']');
      return;
    }
    case Type::Dict: {
      const DictData& d = v.dict();
      if (d.size() == 0) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& e : d.entries()) entries.push_back(&e);
      if (o.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) {
          return compare(a->first, b->first, "<") < 0;
        });
      }
      out.push_back('{');
      if (o.pretty) json_newline(out, o, level + 1);
      bool first = true;
      for (const auto* e : entries) {
        if (!first) {
          out += o.item_separator;
          if (o.pretty) json_newline(out, o, level + 1);
        }
        first = false;
        json_string(out, json_key(e->first), o.ensure_ascii);
        out += o.key_separator;
        json_value(out, e->second, o, level + 1, depth + 1);
      }
      if (o.pretty) json_newline(out, o, level);
      out.push_back('}');
      return;
    }
    default: break;
  }
  fail(ErrKind::Type, "Object of type " + type_name(v) + " is not JSON serializable");
}

}  // namespace

std::string json_dumps(const Value& v, const JsonOptions& options) {
  std::string out;
  json_value(out, v, options, 0, 0);
  return out;
}

// ---------------------------------------------------------------------------

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail(ErrKind::Limit, "integer overflow (scalpel integers are 64-bit)");
  return r;
}
int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) fail(ErrKind::Limit, "integer overflow (scalpel integers are 64-bit)");
  return r;
}
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(ErrKind::Limit, "integer overflow (scalpel integers are 64-bit)");
  return r;
}

}  // namespace scalpel::jinja
