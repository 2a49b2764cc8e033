// src/io/jinja/value.hpp — the dynamic values of the chat-template interpreter.
//
// A Value behaves like the Python object jinja2 would hold in its place:
// Undefined (jinja2's default Undefined), None, bool, int (64-bit here),
// float, str (UTF-8, indexed by code point), sequences (list, tuple, range,
// dict views), insertion-ordered dicts, one-shot iterators (what jinja2's
// select/map/reverse/... filters return: always truthy, no len(), consumed by
// iteration) and objects (namespace, loop, functions, macros).
//
// Lists, tuples and dicts are immutable once built (the templates run in
// jinja2's ImmutableSandboxedEnvironment, where nothing can mutate them), so
// copies share storage. Namespaces and iterators are mutable and shared, as in
// Python.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace scalpel::jinja {

class Interp;
class Value;

// ---------------------------------------------------------------------------
// Errors raised while evaluating. The interpreter adds the template position
// and turns them into scalpel's public exception types.

enum class ErrKind {
  Type,         // Python TypeError (wrong operand types, not callable, ...)
  Value,        // Python ValueError / jinja FilterArgumentError / ZeroDivisionError
  Undefined,    // jinja2 UndefinedError (an operation on an undefined value)
  Security,     // jinja2 SecurityError (sandbox: mutating a list, namespace "_x", ...)
  Raised,       // raise_exception(...) called by the template
  Limit,        // a scalpel safety bound (recursion, iterations, output size)
  Unsupported,  // valid Jinja2/Python that scalpel does not implement
};

struct EvalError {
  ErrKind kind;
  std::string message;
  size_t pos = 0;        // template position, filled in by the innermost node
  bool located = false;  // whether pos is set
};

[[noreturn]] void fail(ErrKind kind, std::string message);
/// Unsupported construct at run time; the message points to the docs.
[[noreturn]] void unsupported(const std::string& what);
class Value;
/// The error for using an Undefined value (jinja2's UndefinedError).
[[noreturn]] void fail_undefined(const Value& v);

// ---------------------------------------------------------------------------

enum class Type : uint8_t { Undefined, None, Bool, Int, Float, String, Seq, Dict, Iter, Object };

/// Which Python sequence type a Seq value is. All are iterable and sized;
/// they differ in repr, equality, subscripting and JSON serialisation.
enum class SeqKind : uint8_t { List, Tuple, Range, DictKeys, DictValues, DictItems };

struct SeqData {
  SeqKind kind = SeqKind::List;
  std::vector<Value> items;
  int64_t start = 0, stop = 0, step = 1;  // Range only (for repr)
  int depth = 1;                          // nesting of lists/tuples/dicts inside
};

/// Deepest nesting of lists, tuples and dicts a value may have. Bounding it
/// bounds every recursive algorithm on values (repr, ==, hashing, JSON,
/// destruction); Python itself stops at its recursion limit.
constexpr int kMaxValueDepth = 500;

/// An insertion-ordered dict with Python key equality (1 == 1.0 == True).
class DictData {
 public:
  const Value* find(const Value& key) const;  // fails (TypeError) for unhashable keys
  void set(const Value& key, const Value& value);
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  int depth() const { return depth_; }
  void set_depth(int d) { depth_ = d; }

 private:
  std::vector<std::pair<Value, Value>> entries_;
  int depth_ = 1;
  std::unordered_multimap<size_t, size_t> index_;  // hash -> position in entries_
};

/// A one-shot iterator: the items not yet consumed are items[pos...].
struct IterData {
  std::vector<Value> items;
  size_t pos = 0;
  std::string type_name;  // Python type, for messages ("generator", "list_reverseiterator")
  /// A generator whose body fails when first advanced (jinja2 generator
  /// filters check their input lazily): the TypeError message, or empty.
  std::string pending_error;
};

/// Arguments of a call: positional then keyword, as written.
struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

/// Namespaces, the loop variable, functions, macros, ...
class Object {
 public:
  virtual ~Object() = default;
  /// Python type name, for messages.
  virtual std::string type_name() const = 0;
  /// str()/repr(). Objects whose Python repr holds a memory address (and so
  /// could never be rendered reproducibly) refuse.
  virtual std::string repr() const;
  /// Attribute lookup; an Undefined value when absent.
  virtual Value getattr(const std::string& name) const;
  virtual bool callable() const { return false; }
  virtual Value call(Interp& interp, CallArgs& args) const;
  virtual bool truthy() const { return true; }
  /// len(); -1 when the object has no length.
  virtual int64_t len() const { return -1; }
  /// Namespaces only: `{% set ns.attr = value %}`.
  virtual bool is_namespace() const { return false; }
};

class Value {
 public:
  /// An Undefined value; `hint` explains what was undefined.
  Value() = default;
  static Value undefined(std::string hint);
  /// jinja2's "unsafe undefined": what the sandbox gives for a forbidden
  /// attribute (list.append, ...); using it is a security error.
  static Value unsafe_undefined(std::string hint);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value real(double d);
  static Value string(std::string s, bool markup = false);
  static Value seq(SeqKind kind, std::vector<Value> items);
  static Value list(std::vector<Value> items) { return seq(SeqKind::List, std::move(items)); }
  static Value tuple(std::vector<Value> items) { return seq(SeqKind::Tuple, std::move(items)); }
  static Value range(int64_t start, int64_t stop, int64_t step);
  static Value dict(DictData d);
  static Value iter(std::vector<Value> items, std::string type_name);
  static Value object(std::shared_ptr<Object> obj);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_float() const { return type_ == Type::Float; }
  bool is_string() const { return type_ == Type::String; }
  bool is_seq() const { return type_ == Type::Seq; }
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_iter() const { return type_ == Type::Iter; }
  bool is_object() const { return type_ == Type::Object; }
  /// bool, int or float (Python numbers; bool is an int subclass).
  bool is_number() const { return type_ == Type::Bool || type_ == Type::Int || type_ == Type::Float; }
  /// bool or int.
  bool is_integral() const { return type_ == Type::Bool || type_ == Type::Int; }
  bool is_list() const { return is_seq() && seq().kind == SeqKind::List; }
  bool is_tuple() const { return is_seq() && seq().kind == SeqKind::Tuple; }

  bool as_bool() const { return b_; }
  /// The integer value of a bool or int.
  int64_t as_int() const { return type_ == Type::Bool ? (b_ ? 1 : 0) : i_; }
  /// The value of any number as a double.
  double as_double() const { return type_ == Type::Float ? f_ : static_cast<double>(as_int()); }
  const std::string& str() const { return *static_cast<const std::string*>(p_.get()); }
  bool markup() const { return markup_; }
  const SeqData& seq() const { return *static_cast<const SeqData*>(p_.get()); }
  const std::vector<Value>& items() const { return seq().items; }
  const DictData& dict() const { return *static_cast<const DictData*>(p_.get()); }
  IterData& iter() const { return *static_cast<IterData*>(p_.get()); }
  Object& object() const { return *static_cast<Object*>(p_.get()); }
  std::shared_ptr<Object> object_ptr() const { return std::static_pointer_cast<Object>(p_); }
  /// Why an Undefined value is undefined (jinja2's message).
  std::string undefined_hint() const;
  /// The error that using this Undefined raises (Undefined or Security).
  ErrKind undefined_error() const { return b_ ? ErrKind::Security : ErrKind::Undefined; }
  /// Identity of the shared payload (Python `is` for containers).
  const void* identity() const { return p_.get(); }

 private:
  Type type_ = Type::Undefined;
  bool markup_ = false;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0.0;
  std::shared_ptr<void> p_;
};

// ---------------------------------------------------------------------------
// Python semantics.

/// Python type name ("str", "int", "NoneType", "dict_items", ...).
std::string type_name(const Value& v);
/// bool(v).
bool truthy(const Value& v);
/// str(v): what `{{ v }}` prints.
std::string to_str(const Value& v);
/// repr(v).
std::string repr(const Value& v);
/// repr of a str.
std::string repr_string(const std::string& s);
/// repr of a float ("1.0", "1e+16", "0.30000000000000004", "inf", "nan").
std::string float_repr(double d);
/// v == w.
bool equals(const Value& a, const Value& b);
/// Python ordering; returns <0, 0, >0. `op` names the operator for the
/// TypeError raised between unorderable types.
int compare(const Value& a, const Value& b, const char* op);
/// hash(v) consistent with equals(); TypeError for unhashable values.
size_t hash_value(const Value& v);
/// len(v); TypeError when v has no length.
int64_t length(const Value& v);
/// list(iter(v)): the items iteration yields (consumes iterators). Strings
/// give their characters, dicts their keys, Undefined nothing.
std::vector<Value> iterate(const Value& v);
/// Whether iter(v) works.
bool is_iterable(const Value& v);

/// json.dumps options (the `tojson` filter transformers installs).
struct JsonOptions {
  bool ensure_ascii = false;
  bool pretty = false;           // indent is not None
  std::string indent;            // the indent string when pretty
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string json_dumps(const Value& v, const JsonOptions& options);

/// Checked 64-bit arithmetic (Python ints are unbounded; scalpel reports an
/// overflow instead of wrapping).
int64_t checked_add(int64_t a, int64_t b);
int64_t checked_sub(int64_t a, int64_t b);
int64_t checked_mul(int64_t a, int64_t b);

}  // namespace scalpel::jinja
