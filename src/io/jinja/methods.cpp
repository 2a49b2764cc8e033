// src/io/jinja/methods.cpp — attribute and item access on built-in values
// (jinja2's sandboxed getattr/getitem) and the Python methods templates call
// on them: str.strip(), str.split(), dict.items(), dict.get(), ...
//
// Lookup rules (jinja2 sandbox): `obj.name` tries the Python attribute first
// (a method), then obj["name"]; `obj[key]` tries the item first, then, for a
// string key, the attribute; a missing item (including an out-of-range index)
// gives Undefined. Methods that would mutate a list or dict are refused
// (ImmutableSandboxedEnvironment).
#include <algorithm>
#include <set>

#include "io/jinja/interp.hpp"
#include "io/jinja/unicode.hpp"

namespace scalpel::jinja {
namespace {

using MethodFn = Value (*)(Interp&, const Value& self, const CallArgs& args);

const std::set<std::string>& python_str_methods() {
  static const std::set<std::string> m = {
      "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
      "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
      "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
      "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
      "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
      "title", "translate", "upper", "zfill"};
  return m;
}

const std::set<std::string>& python_dict_methods() {
  static const std::set<std::string> m = {"clear", "copy", "fromkeys", "get", "items", "keys",
                                          "pop", "popitem", "setdefault", "update", "values"};
  return m;
}

const std::set<std::string>& python_list_methods() {
  static const std::set<std::string> m = {"append", "clear", "copy", "count", "extend", "index",
                                          "insert", "pop", "remove", "reverse", "sort"};
  return m;
}

bool is_mutating(const std::string& type, const std::string& name) {
  static const std::set<std::string> dict_m = {"clear", "pop", "popitem", "setdefault", "update"};
  static const std::set<std::string> list_m = {"append", "clear", "pop", "reverse", "insert", "sort", "extend",
                                               "remove"};
  return (type == "dict" && dict_m.count(name)) || (type == "list" && list_m.count(name));
}

// ---- helpers ------------------------------------------------------------------

std::u32string u32(const Value& v, const std::string& what) { return uni::decode(expect_str(v, what)); }

// Python's start/end arguments of find/count/startswith, on a length.
void clamp_range(const Args& a, size_t first, int64_t len, int64_t* start, int64_t* end) {
  auto get = [&](size_t i, int64_t dflt) -> int64_t {
    if (!a.has(i) || a[i].is_none()) return dflt;
    int64_t v = expect_int(a[i], "slice index");
    if (v < 0) v = std::max<int64_t>(0, v + len);
    return std::min(v, len);
  };
  *start = get(first, 0);
  *end = get(first + 1, len);
}

int64_t find_in(const std::u32string& hay, const std::u32string& needle, int64_t start, int64_t end, bool reverse) {
  if (end - start < static_cast<int64_t>(needle.size())) return -1;
  const std::u32string window = hay.substr(static_cast<size_t>(start), static_cast<size_t>(end - start));
  const size_t r = reverse ? window.rfind(needle) : window.find(needle);
  return r == std::u32string::npos ? -1 : static_cast<int64_t>(r) + start;
}

Value strings(const std::vector<std::string>& parts) {
  std::vector<Value> out;
  out.reserve(parts.size());
  for (const auto& p : parts) out.push_back(Value::string(p));
  return Value::list(std::move(out));
}

template <typename Pred>
Value all_chars(const std::string& s, Pred p) {
  const std::u32string u = uni::decode(s);
  if (u.empty()) return Value::boolean(false);
  return Value::boolean(std::all_of(u.begin(), u.end(), p));
}

// str.islower / isupper: some cased character and none of the other case.
Value case_test(const std::string& s, bool want_lower) {
  bool cased = false;
  for (char32_t c : uni::decode(s)) {
    if (want_lower ? uni::is_upper(c) : uni::is_lower(c)) return Value::boolean(false);
    // Titlecase letters count as "upper" for islower and as "lower"-incompatible for isupper.
    if (uni::is_cased(c) && !uni::is_lower(c) && !uni::is_upper(c)) return Value::boolean(false);
    if (want_lower ? uni::is_lower(c) : uni::is_upper(c)) cased = true;
  }
  return Value::boolean(cased);
}

bool prefix_match(const std::u32string& s, const Value& affix, int64_t start, int64_t end, bool suffix,
                  const char* fname) {
  auto one = [&](const Value& v) {
    const std::u32string a = u32(v, fname);
    if (end - start < static_cast<int64_t>(a.size())) return start <= end && a.empty();
    if (suffix) return s.compare(static_cast<size_t>(end) - a.size(), a.size(), a) == 0;
    return s.compare(static_cast<size_t>(start), a.size(), a) == 0;
  };
  if (affix.is_tuple()) {
    for (const Value& v : affix.items())
      if (one(v)) return true;
    return false;
  }
  if (!affix.is_string())
    fail(ErrKind::Type, std::string(fname) + " first arg must be str or a tuple of str, not " + type_name(affix));
  return one(affix);
}

// ---- str methods ----------------------------------------------------------------

Value str_method(Interp& interp, const std::string& name, const Value& self, const CallArgs& args);

Value as_markup(const Value& v) {
  if (v.is_string()) return Value::string(v.str(), true);
  if (v.is_seq()) {
    std::vector<Value> items;
    for (const Value& x : v.items()) items.push_back(as_markup(x));
    return Value::seq(v.seq().kind, std::move(items));
  }
  return v;
}

Value escaped(const Value& v) {
  if (v.is_string() && v.markup()) return v;
  return Value::string(pystr::html_escape(to_str(v)), true);
}

// markupsafe.Markup overrides most str methods so that they return Markup,
// escaping their string arguments where they insert them.
Value markup_method(Interp& interp, const std::string& name, const Value& self, const CallArgs& args) {
  static const std::set<std::string> keep = {"capitalize", "title",      "lower",        "upper",
                                             "lstrip",     "rstrip",     "strip",        "swapcase",
                                             "zfill",      "casefold",   "removeprefix", "removesuffix",
                                             "split",      "rsplit",     "splitlines",   "partition",
                                             "rpartition"};
  if (keep.count(name)) return as_markup(str_method(interp, name, Value::string(self.str()), args));
  if (name == "replace" || name == "center" || name == "ljust" || name == "rjust" || name == "join") {
    CallArgs escaped_args = args;
    if (name == "join") {
      std::vector<Value> items;
      for (const Value& x : iterate(args.pos.empty() ? Value() : args.pos[0])) items.push_back(escaped(x));
      if (!escaped_args.pos.empty()) escaped_args.pos[0] = Value::list(std::move(items));
    } else {
      const size_t i = 1;  // replace's new text; center/ljust/rjust's fill character
      if (escaped_args.pos.size() > i) escaped_args.pos[i] = escaped(escaped_args.pos[i]);
    }
    return as_markup(str_method(interp, name, Value::string(self.str()), escaped_args));
  }
  static const std::set<std::string> plain = {"startswith", "endswith", "find",  "rfind", "index",
                                              "rindex",     "count",    "isalnum", "isalpha", "isascii",
                                              "isdecimal",  "isdigit",  "isidentifier", "islower",
                                              "isnumeric",  "isprintable", "isspace", "istitle", "isupper"};
  if (plain.count(name)) return str_method(interp, name, Value::string(self.str()), args);
  unsupported("the method Markup." + name + "() (on a value marked safe or escaped)");
}

Value str_method(Interp& interp, const std::string& name, const Value& self, const CallArgs& args) {
  if (self.markup()) return markup_method(interp, name, self, args);
  const std::string& s = self.str();
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Args a(name, args, {"chars"}, 0);
    return Value::string(pystr::strip(s, a.get(0, Value::none()), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    Args a(name, args, {"sep", "maxsplit"}, 0);
    const int64_t maxsplit = a.has(1) ? expect_int(a[1], name + " maxsplit") : -1;
    return strings(pystr::split(s, a.get(0, Value::none()), maxsplit, name == "rsplit"));
  }
  if (name == "splitlines") {
    Args a(name, args, {"keepends"}, 0);
    return strings(pystr::splitlines(s, a.has(0) && truthy(a[0])));
  }
  if (name == "startswith" || name == "endswith") {
    Args a(name, args, {"prefix", "start", "end"}, 1);
    const std::u32string u = uni::decode(s);
    int64_t start, end;
    clamp_range(a, 1, static_cast<int64_t>(u.size()), &start, &end);
    if (start > end) return Value::boolean(false);
    return Value::boolean(prefix_match(u, a[0], start, end, name == "endswith", name.c_str()));
  }
  if (name == "upper") return Value::string(uni::upper(s));
  if (name == "lower" || name == "casefold") return Value::string(uni::lower(s));
  if (name == "title") return Value::string(uni::title(s));
  if (name == "capitalize") return Value::string(uni::capitalize(s));
  if (name == "swapcase") return Value::string(uni::swapcase(s));
  if (name == "replace") {
    Args a(name, args, {"old", "new", "count"}, 2);
    const int64_t count = a.has(2) ? expect_int(a[2], "replace count") : -1;
    return Value::string(pystr::replace(s, expect_str(a[0], "replace"), expect_str(a[1], "replace"), count));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    Args a(name, args, {"sub", "start", "end"}, 1);
    const std::u32string u = uni::decode(s);
    const std::u32string sub = u32(a[0], name);
    int64_t start, end;
    clamp_range(a, 1, static_cast<int64_t>(u.size()), &start, &end);
    if (name == "count") {
      if (start > end) return Value::integer(0);
      if (sub.empty()) return Value::integer(end - start + 1);
      int64_t n = 0;
      for (int64_t i = start; i + static_cast<int64_t>(sub.size()) <= end;) {
        if (u.compare(static_cast<size_t>(i), sub.size(), sub) == 0) {
          ++n;
          i += static_cast<int64_t>(sub.size());
        } else {
          ++i;
        }
      }
      return Value::integer(n);
    }
    const bool rev = name[0] == 'r';
    const int64_t r = start > end ? -1 : find_in(u, sub, start, end, rev);
    if (r < 0 && (name == "index" || name == "rindex")) fail(ErrKind::Value, "substring not found");
    return Value::integer(r);
  }
  if (name == "join") {
    Args a(name, args, {"iterable"}, 1);
    std::string out;
    size_t i = 0;
    for (const Value& v : iterate(a[0])) {
      if (!v.is_string())
        fail(ErrKind::Type, "sequence item " + std::to_string(i) + ": expected str instance, " + type_name(v) +
                                " found");
      if (i++) out += s;
      out += v.str();
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(brace_format(interp, s, args));
  if (name == "center" || name == "ljust" || name == "rjust") {
    Args a(name, args, {"width", "fillchar"}, 1);
    char32_t fill = ' ';
    if (a.has(1)) {
      const std::u32string f = u32(a[1], name);
      if (f.size() != 1) fail(ErrKind::Type, "The fill character must be exactly one character long");
      fill = f[0];
    }
    const int align = name == "ljust" ? -1 : name == "center" ? 0 : 1;
    return Value::string(pystr::pad(s, expect_int(a[0], name + " width"), fill, align));
  }
  if (name == "zfill") {
    Args a(name, args, {"width"}, 1);
    const int64_t width = expect_int(a[0], "zfill width");
    const int64_t len = static_cast<int64_t>(uni::length(s));
    if (width <= len) return self;
    const bool sign = !s.empty() && (s[0] == '+' || s[0] == '-');
    std::string out = sign ? s.substr(0, 1) : "";
    out += std::string(static_cast<size_t>(width - len), '0');
    out += sign ? s.substr(1) : s;
    return Value::string(std::move(out));
  }
  if (name == "partition" || name == "rpartition") {
    Args a(name, args, {"sep"}, 1);
    const std::string& sep = expect_str(a[0], name);
    if (sep.empty()) fail(ErrKind::Value, "empty separator");
    const size_t i = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (i == std::string::npos) {
      if (name == "partition") return Value::tuple({self, Value::string(""), Value::string("")});
      return Value::tuple({Value::string(""), Value::string(""), self});
    }
    return Value::tuple({Value::string(s.substr(0, i)), Value::string(sep), Value::string(s.substr(i + sep.size()))});
  }
  if (name == "removeprefix" || name == "removesuffix") {
    Args a(name, args, {"affix"}, 1);
    const std::string& x = expect_str(a[0], name);
    if (name == "removeprefix" && s.compare(0, x.size(), x) == 0) return Value::string(s.substr(x.size()));
    if (name == "removesuffix" && !x.empty() && s.size() >= x.size() &&
        s.compare(s.size() - x.size(), x.size(), x) == 0)
      return Value::string(s.substr(0, s.size() - x.size()));
    return Value::string(s);
  }
  if (name.size() > 2 && name[0] == 'i' && name[1] == 's') {
    Args a(name, args, {}, 0);
    if (name == "isalpha") return all_chars(s, uni::is_alpha);
    if (name == "isdecimal") return all_chars(s, uni::is_decimal);
    if (name == "isdigit") return all_chars(s, uni::is_digit);
    if (name == "isnumeric") return all_chars(s, uni::is_numeric);
    if (name == "isspace") return all_chars(s, uni::is_space);
    if (name == "isalnum")
      return all_chars(s, [](char32_t c) {
        return uni::is_alpha(c) || uni::is_decimal(c) || uni::is_digit(c) || uni::is_numeric(c);
      });
    if (name == "isascii") return Value::boolean(uni::is_ascii(s));
    if (name == "isprintable") {
      const std::u32string u = uni::decode(s);
      return Value::boolean(std::all_of(u.begin(), u.end(), [](char32_t c) { return uni::is_printable(c); }));
    }
    if (name == "islower") return case_test(s, true);
    if (name == "isupper") return case_test(s, false);
    if (name == "istitle") {
      bool cased = false, previous_cased = false;
      for (char32_t c : uni::decode(s)) {
        const bool upper_or_title = uni::is_cased(c) && !uni::is_lower(c);
        if (upper_or_title) {
          if (previous_cased) return Value::boolean(false);
          previous_cased = cased = true;
        } else if (uni::is_lower(c)) {
          if (!previous_cased) return Value::boolean(false);
          previous_cased = cased = true;
        } else {
          previous_cased = false;
        }
      }
      return Value::boolean(cased);
    }
  }
  unsupported("the method str." + name + "()");
}

// ---- dict methods ---------------------------------------------------------------------

Value dict_view(const DictData& d, SeqKind kind) {
  std::vector<Value> items;
  items.reserve(d.size());
  for (const auto& e : d.entries()) {
    if (kind == SeqKind::DictKeys)
      items.push_back(e.first);
    else if (kind == SeqKind::DictValues)
      items.push_back(e.second);
    else
      items.push_back(Value::tuple({e.first, e.second}));
  }
  return Value::seq(kind, std::move(items));
}

Value dict_method(const std::string& name, const Value& self, const CallArgs& args) {
  const DictData& d = self.dict();
  if (name == "items" || name == "keys" || name == "values") {
    Args a(name, args, {}, 0);
    return dict_view(d, name == "items" ? SeqKind::DictItems : name == "keys" ? SeqKind::DictKeys : SeqKind::DictValues);
  }
  if (name == "get") {
    Args a(name, args, {"key", "default"}, 1);
    const Value* v = d.find(a[0]);
    return v ? *v : a.get(1, Value::none());
  }
  if (name == "copy") {
    Args a(name, args, {}, 0);
    return self;  // dicts are immutable here, so a copy is the same value
  }
  unsupported("the method dict." + name + "()");
}

// ---- list / tuple / range methods --------------------------------------------------------

Value seq_method(const std::string& name, const Value& self, const CallArgs& args) {
  const auto& items = self.items();
  if (name == "count") {
    Args a(name, args, {"value"}, 1);
    int64_t n = 0;
    for (const Value& v : items)
      if (equals(v, a[0])) ++n;
    return Value::integer(n);
  }
  if (name == "index") {
    Args a(name, args, {"value", "start", "stop"}, 1);
    int64_t start, end;
    clamp_range(a, 1, static_cast<int64_t>(items.size()), &start, &end);
    for (int64_t i = start; i < end; ++i)
      if (equals(items[static_cast<size_t>(i)], a[0])) return Value::integer(i);
    fail(ErrKind::Value, repr(a[0]) + " is not in " + type_name(self));
  }
  if (name == "copy" && self.is_list()) {
    Args a(name, args, {}, 0);
    return self;
  }
  unsupported("the method " + type_name(self) + "." + name + "()");
}

// A bound method value: `"abc".upper` before the call.
Value bound(const Value& self, const std::string& name) {
  return Value::object(std::make_shared<Function>(name, [self, name](Interp& interp, CallArgs& args) {
    if (self.is_string()) return str_method(interp, name, self, args);
    if (self.is_dict()) return dict_method(name, self, args);
    return seq_method(name, self, args);
  }));
}

}  // namespace

// The Python attribute `name` of a built-in value, if any. Mutating methods
// exist but are unsafe in the sandbox: jinja2 gives an Undefined that raises
// a SecurityError when used.
bool python_attribute(const Value& obj, const std::string& name, Value* out) {
  if ((obj.is_dict() && is_mutating("dict", name)) || (obj.is_list() && is_mutating("list", name))) {
    *out = Value::unsafe_undefined("access to attribute '" + name + "' of '" + type_name(obj) +
                            "' object is unsafe (the template sandbox forbids modifying lists and dicts)");
    return true;
  }
  switch (obj.type()) {
    case Type::String:
      if (python_str_methods().count(name)) {
        *out = bound(obj, name);
        return true;
      }
      return false;
    case Type::Dict:
      if (python_dict_methods().count(name)) {
        *out = bound(obj, name);
        return true;
      }
      return false;
    case Type::Seq: {
      const SeqKind k = obj.seq().kind;
      if (k == SeqKind::List && python_list_methods().count(name)) {
        *out = bound(obj, name);
        return true;
      }
      if ((k == SeqKind::Tuple || k == SeqKind::Range) && (name == "count" || name == "index")) {
        *out = bound(obj, name);
        return true;
      }
      if (k == SeqKind::Range && (name == "start" || name == "stop" || name == "step")) {
        const SeqData& r = obj.seq();
        *out = Value::integer(name == "start" ? r.start : name == "stop" ? r.stop : r.step);
        return true;
      }
      return false;
    }
    default: return false;
  }
}

namespace {

std::string object_type_repr(const Value& obj) {
  if (obj.is_none()) return "None";
  return type_name(obj) + " object";
}

Value missing_attribute(const Value& obj, const std::string& name) {
  return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + name + "'");
}

}  // namespace

Value builtin_getattr(Interp&, const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_object()) return obj.object().getattr(name);
  Value attr;
  if (python_attribute(obj, name, &attr)) return attr;
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().find(Value::string(name))) return *v;
  }
  return missing_attribute(obj, name);
}

Value builtin_getitem(Interp&, const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  auto fallback = [&]() -> Value {
    if (key.is_string()) {
      if (obj.is_object()) return obj.object().getattr(key.str());
      Value attr;
      if (python_attribute(obj, key.str(), &attr)) return attr;
      return missing_attribute(obj, key.str());
    }
    return Value::undefined(object_type_repr(obj) + " has no element " + repr(key));
  };
  switch (obj.type()) {
    case Type::Dict: {
      const Value* v = nullptr;
      try {
        v = obj.dict().find(key);
      } catch (EvalError& e) {
        if (e.kind != ErrKind::Type) throw;  // unhashable key: TypeError, handled below
      }
      if (v) return *v;
      return fallback();
    }
    case Type::Seq: {
      const SeqKind k = obj.seq().kind;
      if ((k == SeqKind::List || k == SeqKind::Tuple || k == SeqKind::Range) && key.is_integral()) {
        const auto& items = obj.items();
        int64_t i = key.as_int();
        if (i < 0) i += static_cast<int64_t>(items.size());
        if (i < 0 || i >= static_cast<int64_t>(items.size()))
          return Value::undefined(object_type_repr(obj) + " has no element " + repr(key));
        return items[static_cast<size_t>(i)];
      }
      return fallback();
    }
    case Type::String: {
      if (!key.is_integral()) return fallback();
      const std::string& s = obj.str();
      int64_t i = key.as_int();
      if (uni::is_ascii(s)) {
        if (i < 0) i += static_cast<int64_t>(s.size());
        if (i < 0 || i >= static_cast<int64_t>(s.size())) return fallback();
        return Value::string(std::string(1, s[static_cast<size_t>(i)]), obj.markup());
      }
      const std::u32string u = uni::decode(s);
      if (i < 0) i += static_cast<int64_t>(u.size());
      if (i < 0 || i >= static_cast<int64_t>(u.size())) return fallback();
      std::string out;
      uni::append(out, u[static_cast<size_t>(i)]);
      return Value::string(std::move(out), obj.markup());
    }
    default: return fallback();
  }
}

}  // namespace scalpel::jinja
