// src/io/jinja/filters.cpp — jinja2's built-in filters and tests, with the
// `tojson` filter transformers installs in their place (json.dumps with
// ensure_ascii=False). Each follows jinja2's implementation in filters.py /
// tests.py, including which ones return one-shot generators (select, map,
// unique, ...) rather than lists.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <unordered_map>

#include "io/jinja/interp.hpp"
#include "io/jinja/parser.hpp"
#include "io/jinja/unicode.hpp"

namespace scalpel::jinja {
namespace {

using FilterFn = Value (*)(Interp&, const Value&, CallArgs&);
using TestFn = bool (*)(Interp&, const Value&, CallArgs&);

// ---- helpers ------------------------------------------------------------------

// jinja2's _prepare_attribute_parts + make_attrgetter: "a.b.0" walks
// item["a"]["b"][0] with the sandboxed getitem.
struct AttrGetter {
  std::vector<Value> parts;
  bool lower = false;  // ignore_case post-processing
  bool has_default = false;
  Value dflt;

  AttrGetter() = default;
  AttrGetter(const Value& attribute, bool ignore_case) : lower(ignore_case) {
    if (attribute.is_none() || attribute.is_undefined()) return;
    if (attribute.is_string()) {
      for (const std::string& p : pystr::split(attribute.str(), Value::string("."), -1, false)) {
        const bool digits = !p.empty() && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (digits) {
          int64_t n = 0;
          parse_py_int(p, 10, &n);
          parts.push_back(Value::integer(n));
        } else {
          parts.push_back(Value::string(p));
        }
      }
    } else {
      parts.push_back(attribute);
    }
  }

  Value operator()(Interp& in, Value item) const {
    for (const Value& p : parts) {
      item = in.getitem(item, p);
      if (has_default && item.is_undefined()) item = dflt;
    }
    if (lower && item.is_string()) item = Value::string(uni::lower(item.str()));
    return item;
  }
};

// make_multi_attrgetter (sort): comma-separated attributes give a list key.
std::vector<AttrGetter> multi_getter(const Value& attribute, bool ignore_case) {
  std::vector<AttrGetter> out;
  if (attribute.is_string()) {
    for (const std::string& a : pystr::split(attribute.str(), Value::string(","), -1, false))
      out.emplace_back(Value::string(a), ignore_case);
  } else {
    out.emplace_back(attribute, ignore_case);
  }
  return out;
}

Value generator(std::vector<Value> items) { return Value::iter(std::move(items), "generator"); }

std::vector<Value> items_of(Interp& in, const Value& v) {
  std::vector<Value> items = iterate(v);
  in.count_work(static_cast<int64_t>(items.size()));
  return items;
}

std::string soft_str(const Value& v) { return to_str(v); }

// Filters that call a str method on soft_str(value) return Markup for Markup.
bool is_markup(const Value& v) { return v.is_string() && v.markup(); }

// Python's round(x, n) for floats.
double py_round(double x, int64_t n) {
  if (!std::isfinite(x) || n > 340) return x;
  if (n >= 0) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(n), x);
    return std::strtod(buf, nullptr);
  }
  if (n < -340) return std::copysign(0.0, x);
  const double pow1 = std::pow(10.0, static_cast<double>(-n));
  const double y = x / pow1;
  double z = std::nearbyint(y);  // ties to even
  return z * pow1;
}

Value sort_items(Interp& in, std::vector<Value> items, bool reverse, bool case_sensitive, const Value& attribute) {
  const std::vector<AttrGetter> getters = multi_getter(attribute, !case_sensitive);
  std::vector<std::pair<Value, Value>> keyed;
  keyed.reserve(items.size());
  for (Value& it : items) {
    std::vector<Value> key;
    for (const AttrGetter& g : getters) key.push_back(g(in, it));
    keyed.emplace_back(Value::list(std::move(key)), std::move(it));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first, "<") == -1 : compare(a.first, b.first, "<") == -1;
  });
  std::vector<Value> out;
  out.reserve(keyed.size());
  for (auto& k : keyed) out.push_back(std::move(k.second));
  return Value::list(std::move(out));
}

// ---- filters ---------------------------------------------------------------------------

Value f_abs(Interp&, const Value& v, CallArgs& args) {
  Args a("abs", args, {}, 0);
  if (v.is_integral()) return Value::integer(v.as_int() < 0 ? checked_sub(0, v.as_int()) : v.as_int());
  if (v.is_float()) return Value::real(std::fabs(v.as_double()));
  if (v.is_undefined()) fail_undefined(v);
  fail(ErrKind::Type, "bad operand type for abs(): '" + type_name(v) + "'");
}

Value f_attr(Interp& in, const Value& v, CallArgs& args) {
  Args a("attr", args, {"name"}, 1);
  const std::string& name = expect_str(a[0], "attr");
  // Only real attributes: unlike obj.name, attr() does not fall back to items.
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_object()) return in.getattr(v, name);
  Value attr;
  if (python_attribute(v, name, &attr)) return attr;
  return Value::undefined("'" + type_name(v) + " object' has no attribute '" + name + "'");
}

Value f_batch(Interp& in, const Value& v, CallArgs& args) {
  Args a("batch", args, {"linecount", "fill_with"}, 1);
  const int64_t n = expect_int(a[0], "batch linecount");
  const Value fill = a.get(1, Value::none());
  std::vector<Value> out, tmp;
  for (const Value& item : items_of(in, v)) {
    if (static_cast<int64_t>(tmp.size()) == n) {
      out.push_back(Value::list(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(item);
  }
  if (!tmp.empty()) {
    if (!fill.is_none())
      while (static_cast<int64_t>(tmp.size()) < n) tmp.push_back(fill);
    out.push_back(Value::list(std::move(tmp)));
  }
  return generator(std::move(out));
}

Value f_capitalize(Interp&, const Value& v, CallArgs& args) {
  Args a("capitalize", args, {}, 0);
  return Value::string(uni::capitalize(soft_str(v)), is_markup(v));
}

Value f_center(Interp&, const Value& v, CallArgs& args) {
  Args a("center", args, {"width"}, 0);
  return Value::string(pystr::pad(soft_str(v), a.has(0) ? expect_int(a[0], "center width") : 80, ' ', 0),
                       is_markup(v));
}

int64_t length_of(const Value& v) {
  if (v.is_object() && v.object().len() >= 0) return v.object().len();
  return length(v);
}

Value f_length(Interp&, const Value& v, CallArgs& args) {
  Args a("length", args, {}, 0);
  return Value::integer(length_of(v));
}

Value f_default(Interp&, const Value& v, CallArgs& args) {
  Args a("default", args, {"default_value", "boolean"}, 0);
  const bool boolean = a.has(1) && truthy(a[1]);
  if (v.is_undefined() || (boolean && !truthy(v))) return a.get(0, Value::string(""));
  return v;
}

Value f_dictsort(Interp&, const Value& v, CallArgs& args) {
  Args a("dictsort", args, {"case_sensitive", "by", "reverse"}, 0);
  if (!v.is_dict()) fail(ErrKind::Type, "dictsort: expected a dict, got " + type_name(v));
  const bool case_sensitive = a.has(0) && truthy(a[0]);
  const std::string by = a.has(1) ? expect_str(a[1], "dictsort by") : "key";
  if (by != "key" && by != "value") fail(ErrKind::Value, "You can only sort by either \"key\" or \"value\"");
  const size_t pos = by == "key" ? 0 : 1;
  const bool reverse = a.has(2) && truthy(a[2]);
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& e : v.dict().entries()) {
    Value k = pos == 0 ? e.first : e.second;
    if (!case_sensitive && k.is_string()) k = Value::string(uni::lower(k.str()));
    keyed.emplace_back(k, Value::tuple({e.first, e.second}));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& x, const auto& y) {
    return reverse ? compare(y.first, x.first, "<") == -1 : compare(x.first, y.first, "<") == -1;
  });
  std::vector<Value> out;
  for (auto& k : keyed) out.push_back(std::move(k.second));
  return Value::list(std::move(out));
}

Value f_escape(Interp&, const Value& v, CallArgs& args) {
  Args a("escape", args, {}, 0);
  if (v.is_string() && v.markup()) return v;
  return Value::string(pystr::html_escape(soft_str(v)), true);
}

Value f_forceescape(Interp&, const Value& v, CallArgs& args) {
  Args a("forceescape", args, {}, 0);
  return Value::string(pystr::html_escape(soft_str(v)), true);
}

Value f_safe(Interp&, const Value& v, CallArgs& args) {
  Args a("safe", args, {}, 0);
  if (v.is_string() && v.markup()) return v;
  return Value::string(soft_str(v), true);
}

Value f_first(Interp&, const Value& v, CallArgs& args) {
  Args a("first", args, {}, 0);
  if (v.is_iter()) {
    IterData& it = v.iter();
    if (!it.pending_error.empty()) fail(ErrKind::Type, it.pending_error);
    if (it.pos < it.items.size()) return it.items[it.pos++];
    return Value::undefined("No first item, sequence was empty.");
  }
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(Interp&, const Value& v, CallArgs& args) {
  Args a("last", args, {}, 0);
  if (v.is_iter()) fail(ErrKind::Type, "'" + type_name(v) + "' object is not reversible");
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_float(Interp&, const Value& v, CallArgs& args) {
  Args a("float", args, {"default"}, 0);
  const Value dflt = a.get(0, Value::real(0.0));
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value::real(v.as_double());
  double d;
  if (v.is_string() && parse_py_float(v.str(), &d)) return Value::real(d);
  return dflt;
}

Value f_int(Interp&, const Value& v, CallArgs& args) {
  Args a("int", args, {"default", "base"}, 0);
  const Value dflt = a.get(0, Value::integer(0));
  const int64_t base = a.has(1) ? expect_int(a[1], "int base") : 10;
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_integral()) return Value::integer(v.as_int());
  auto from_double = [&](double d) -> Value {
    if (!std::isfinite(d)) return dflt;
    if (std::fabs(d) >= 9.2e18) fail(ErrKind::Limit, "integer overflow (scalpel integers are 64-bit)");
    return Value::integer(static_cast<int64_t>(std::trunc(d)));
  };
  if (v.is_float()) return from_double(v.as_double());
  if (v.is_string()) {
    int64_t i;
    if (parse_py_int(v.str(), static_cast<int>(base), &i)) return Value::integer(i);
    double d;
    if (parse_py_float(v.str(), &d)) return from_double(d);
  }
  return dflt;
}

Value f_format(Interp&, const Value& v, CallArgs& args) {
  if (is_markup(v)) unsupported("the 'format' filter on a Markup value (markupsafe escapes the arguments)");
  if (!args.pos.empty() && !args.kw.empty())
    fail(ErrKind::Value, "format: can't handle positional and keyword arguments at the same time");
  Value operand;
  if (!args.kw.empty()) {
    DictData d;
    for (const auto& kw : args.kw) d.set(Value::string(kw.first), kw.second);
    operand = Value::dict(std::move(d));
  } else {
    operand = Value::tuple(args.pos);
  }
  return Value::string(percent_format(soft_str(v), operand));
}

Value f_indent(Interp&, const Value& v, CallArgs& args) {
  Args a("indent", args, {"width", "first", "blank"}, 0);
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string()) fail(ErrKind::Type, "unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
  std::string indention = "    ";
  if (a.has(0)) {
    if (a[0].is_string())
      indention = a[0].str();
    else
      indention = std::string(static_cast<size_t>(std::max<int64_t>(0, expect_int(a[0], "indent width"))), ' ');
  }
  const bool first = a.has(1) && truthy(a[1]);
  const bool blank = a.has(2) && truthy(a[2]);
  const std::vector<std::string> lines = pystr::splitlines(v.str() + "\n", false);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? "" : indention + lines[i]);
  }
  if (first) rv = indention + rv;
  return Value::string(std::move(rv), v.markup());
}

Value f_items(Interp&, const Value& v, CallArgs& args) {
  Args a("items", args, {}, 0);
  if (v.is_undefined()) return generator({});
  if (!v.is_dict()) {
    // do_items is a generator: the error surfaces when it is iterated.
    Value g = generator({});
    g.iter().pending_error = "Can only get item pairs from a mapping.";
    return g;
  }
  std::vector<Value> out;
  for (const auto& e : v.dict().entries()) out.push_back(Value::tuple({e.first, e.second}));
  return generator(std::move(out));
}

Value f_join(Interp& in, const Value& v, CallArgs& args) {
  Args a("join", args, {"d", "attribute"}, 0);
  const std::string d = a.has(0) ? soft_str(a[0]) : "";
  const AttrGetter getter(a.get(1, Value::none()), false);
  std::string out;
  bool first = true;
  for (const Value& item : items_of(in, v)) {
    if (!first) out += d;
    first = false;
    out += soft_str(a.has(1) ? getter(in, item) : item);
    if (out.size() > kMaxOutputBytes) fail(ErrKind::Limit, "join: result too large");
  }
  return Value::string(std::move(out));
}

Value f_list(Interp& in, const Value& v, CallArgs& args) {
  Args a("list", args, {}, 0);
  return Value::list(items_of(in, v));
}

Value f_lower(Interp&, const Value& v, CallArgs& args) {
  Args a("lower", args, {}, 0);
  return Value::string(uni::lower(soft_str(v)), is_markup(v));
}

Value f_upper(Interp&, const Value& v, CallArgs& args) {
  Args a("upper", args, {}, 0);
  return Value::string(uni::upper(soft_str(v)), is_markup(v));
}

Value f_map(Interp& in, const Value& v, CallArgs& args) {
  std::function<Value(const Value&)> func;
  bool by_attribute = false;
  for (const auto& kw : args.kw)
    if (kw.first == "attribute") by_attribute = true;
  if (args.pos.empty() && by_attribute) {
    AttrGetter g;
    for (const auto& kw : args.kw) {
      if (kw.first == "attribute") {
        const AttrGetter parsed(kw.second, false);
        g.parts = parsed.parts;
      } else if (kw.first == "default") {
        g.has_default = !kw.second.is_none();
        g.dflt = kw.second;
      } else {
        fail(ErrKind::Type, "map: unexpected keyword argument '" + kw.first + "'");
      }
    }
    func = [&in, g](const Value& item) { return g(in, item); };
  } else {
    if (args.pos.empty()) fail(ErrKind::Type, "map requires a filter argument");
    const std::string name = expect_str(args.pos[0], "map filter name");
    if (filter_availability(name) != Availability::Implemented)
      fail(ErrKind::Type, "map: expected the name of a filter, got '" + name + "'");
    CallArgs rest;
    rest.pos.assign(args.pos.begin() + 1, args.pos.end());
    rest.kw = args.kw;
    func = [&in, name, rest](const Value& item) {
      CallArgs copy = rest;
      return call_filter(in, name, item, copy);
    };
  }
  std::vector<Value> out;
  if (truthy(v))
    for (const Value& item : items_of(in, v)) out.push_back(func(item));
  return generator(std::move(out));
}

Value min_max(Interp& in, const Value& v, CallArgs& args, bool want_max) {
  Args a(want_max ? "max" : "min", args, {"case_sensitive", "attribute"}, 0);
  const bool case_sensitive = a.has(0) && truthy(a[0]);
  const AttrGetter key(a.get(1, Value::none()), !case_sensitive);
  std::vector<Value> items = items_of(in, v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = key(in, items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(in, items[i]);
    if (compare(k, best_key, want_max ? ">" : "<") == (want_max ? 1 : -1)) {
      best = i;
      best_key = k;
    }
  }
  return items[best];
}
Value f_max(Interp& in, const Value& v, CallArgs& args) { return min_max(in, v, args, true); }
Value f_min(Interp& in, const Value& v, CallArgs& args) { return min_max(in, v, args, false); }

// select / reject / selectattr / rejectattr
Value select_reject(Interp& in, const Value& v, CallArgs& args, bool select, bool by_attr) {
  std::vector<Value> out;
  if (!truthy(v)) return generator({});
  size_t off = 0;
  AttrGetter getter;
  if (by_attr) {
    if (args.pos.empty()) fail(ErrKind::Type, "Missing parameter for attribute name");
    getter = AttrGetter(args.pos[0], false);
    off = 1;
  }
  std::string test;
  CallArgs test_args;
  const bool has_test = args.pos.size() > off;
  if (has_test) {
    test = expect_str(args.pos[off], "test name");
    if (test_availability(test) != Availability::Implemented)
      fail(ErrKind::Type, "expected the name of a test, got '" + test + "'");
    test_args.pos.assign(args.pos.begin() + static_cast<std::ptrdiff_t>(off + 1), args.pos.end());
    test_args.kw = args.kw;
  }
  for (const Value& item : items_of(in, v)) {
    const Value x = by_attr ? getter(in, item) : item;
    bool ok;
    if (has_test) {
      CallArgs copy = test_args;
      ok = call_test(in, test, x, copy);
    } else {
      ok = truthy(x);
    }
    if (ok == select) out.push_back(item);
  }
  return generator(std::move(out));
}
Value f_select(Interp& in, const Value& v, CallArgs& a) { return select_reject(in, v, a, true, false); }
Value f_reject(Interp& in, const Value& v, CallArgs& a) { return select_reject(in, v, a, false, false); }
Value f_selectattr(Interp& in, const Value& v, CallArgs& a) { return select_reject(in, v, a, true, true); }
Value f_rejectattr(Interp& in, const Value& v, CallArgs& a) { return select_reject(in, v, a, false, true); }

Value f_replace(Interp&, const Value& v, CallArgs& args) {
  Args a("replace", args, {"old", "new", "count"}, 2);
  const int64_t count = a.has(2) && !a[2].is_none() ? expect_int(a[2], "replace count") : -1;
  return Value::string(pystr::replace(soft_str(v), soft_str(a[0]), soft_str(a[1]), count));
}

Value f_reverse(Interp& in, const Value& v, CallArgs& args) {
  Args a("reverse", args, {}, 0);
  if (v.is_string()) {
    std::u32string u = uni::decode(v.str());
    std::reverse(u.begin(), u.end());
    return Value::string(uni::encode(u));
  }
  if (v.is_iter()) {
    // reversed(generator) fails; jinja2 then reverses list(value).
    std::vector<Value> items = items_of(in, v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (v.is_undefined() || v.is_seq() || v.is_dict()) {
    std::vector<Value> items = items_of(in, v);
    std::reverse(items.begin(), items.end());
    std::string kind = "list_reverseiterator";
    if (v.is_dict() || (v.is_seq() && v.seq().kind == SeqKind::DictKeys)) kind = "dict_reversekeyiterator";
    if (v.is_seq() && v.seq().kind == SeqKind::DictValues) kind = "dict_reversevalueiterator";
    if (v.is_seq() && v.seq().kind == SeqKind::DictItems) kind = "dict_reverseitemiterator";
    if (v.is_seq() && v.seq().kind == SeqKind::Range) kind = "range_iterator";
    if (v.is_undefined()) kind = "reversed";
    return Value::iter(std::move(items), kind);
  }
  fail(ErrKind::Type, "reverse: argument must be iterable");
}

Value f_round(Interp&, const Value& v, CallArgs& args) {
  Args a("round", args, {"precision", "method"}, 0);
  const int64_t precision = a.has(0) ? expect_int(a[0], "round precision") : 0;
  const std::string method = a.has(1) ? expect_str(a[1], "round method") : "common";
  if (method != "common" && method != "ceil" && method != "floor")
    fail(ErrKind::Value, "method must be common, ceil or floor");
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_number()) fail(ErrKind::Type, "type " + type_name(v) + " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_integral()) {
      if (precision >= 0) return Value::integer(v.as_int());
      // round(int, -n): to a multiple of 10**n, ties to even.
      if (precision < -18) return Value::integer(0);
      int64_t p = 1;
      for (int64_t i = 0; i < -precision; ++i) p *= 10;
      const int64_t x = v.as_int();
      int64_t q = x / p, r = x % p;
      if (r < 0) {
        r += p;
        --q;
      }
      if (2 * r > p || (2 * r == p && (q & 1))) ++q;
      return Value::integer(checked_mul(q, p));
    }
    return Value::real(py_round(v.as_double(), precision));
  }
  // math.ceil/floor(value * 10**precision) / 10**precision
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  const double r = method == "ceil" ? std::ceil(x) : std::floor(x);
  return Value::real(r / scale);
}

Value f_slice(Interp& in, const Value& v, CallArgs& args) {
  Args a("slice", args, {"slices", "fill_with"}, 1);
  const int64_t slices = expect_int(a[0], "slice count");
  if (slices <= 0) fail(ErrKind::Value, "slice: expected a positive number of slices, got " + std::to_string(slices));
  const Value fill = a.get(1, Value::none());
  const std::vector<Value> seq = items_of(in, v);
  const int64_t len = static_cast<int64_t>(seq.size());
  const int64_t per = len / slices, extra = len % slices;
  int64_t offset = 0;
  std::vector<Value> out;
  for (int64_t n = 0; n < slices; ++n) {
    const int64_t start = offset + n * per;
    if (n < extra) ++offset;
    const int64_t end = offset + (n + 1) * per;
    std::vector<Value> tmp(seq.begin() + start, seq.begin() + end);
    if (!fill.is_none() && n >= extra) tmp.push_back(fill);
    out.push_back(Value::list(std::move(tmp)));
  }
  return generator(std::move(out));
}

Value f_sort(Interp& in, const Value& v, CallArgs& args) {
  Args a("sort", args, {"reverse", "case_sensitive", "attribute"}, 0);
  return sort_items(in, items_of(in, v), a.has(0) && truthy(a[0]), a.has(1) && truthy(a[1]),
                    a.get(2, Value::none()));
}

Value f_string(Interp&, const Value& v, CallArgs& args) {
  Args a("string", args, {}, 0);
  if (v.is_string()) return v;
  return Value::string(soft_str(v));
}

Value f_sum(Interp& in, const Value& v, CallArgs& args) {
  Args a("sum", args, {"attribute", "start"}, 0);
  Value total = a.get(1, Value::integer(0));
  if (total.is_string()) fail(ErrKind::Type, "sum() can't sum strings [use ''.join(seq) instead]");
  const AttrGetter getter(a.get(0, Value::none()), false);
  for (const Value& item : items_of(in, v)) total = binary_op(BinaryOp::Add, total, getter(in, item));
  return total;
}

Value f_title(Interp&, const Value& v, CallArgs& args) {
  Args a("title", args, {}, 0);
  // jinja2 splits on runs of [-\s({\[<] and capitalises each word's first
  // character (upper), lowering the rest.
  const std::u32string u = uni::decode(soft_str(v));
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || uni::is_space(c);
  };
  std::string out;
  size_t i = 0;
  while (i < u.size()) {
    size_t j = i;
    const bool sep = is_sep(u[i]);
    while (j < u.size() && is_sep(u[j]) == sep) ++j;
    const std::u32string piece = u.substr(i, j - i);
    std::u32string head;
    uni::append_upper(head, piece[0]);
    out += uni::encode(head) + uni::lower(uni::encode(piece.substr(1)));
    i = j;
  }
  return Value::string(std::move(out));
}

Value f_trim(Interp&, const Value& v, CallArgs& args) {
  Args a("trim", args, {"chars"}, 0);
  return Value::string(pystr::strip(soft_str(v), a.get(0, Value::none()), true, true), is_markup(v));
}

Value f_truncate(Interp&, const Value& v, CallArgs& args) {
  Args a("truncate", args, {"length", "killwords", "end", "leeway"}, 0);
  const int64_t length = a.has(0) ? expect_int(a[0], "truncate length") : 255;
  const bool killwords = a.has(1) && truthy(a[1]);
  const std::string end = a.has(2) ? expect_str(a[2], "truncate end") : "...";
  const int64_t leeway = a.has(3) && !a[3].is_none() ? expect_int(a[3], "truncate leeway") : 5;
  const int64_t end_len = static_cast<int64_t>(uni::length(end));
  if (length < end_len) fail(ErrKind::Value, "expected length >= " + std::to_string(end_len) + ", got " + std::to_string(length));
  if (leeway < 0) fail(ErrKind::Value, "expected leeway >= 0, got " + std::to_string(leeway));
  if (!v.is_string()) {
    // len(s) <= length + leeway returns s itself, whatever its type; longer
    // non-strings fail when sliced/concatenated.
    if (length_of(v) <= length + leeway) return v;
    fail(ErrKind::Type, "truncate: expected a string, got " + type_name(v));
  }
  const std::string& s = v.str();
  const std::u32string u = uni::decode(s);
  if (static_cast<int64_t>(u.size()) <= length + leeway) return v;
  const std::string head = uni::encode(u.substr(0, static_cast<size_t>(length - end_len)));
  // On Markup, slicing keeps Markup and Markup + end escapes end.
  const std::string tail = v.markup() ? pystr::html_escape(end) : end;
  if (killwords) return Value::string(head + tail, v.markup());
  const std::vector<std::string> parts = pystr::split(head, Value::string(" "), 1, true);
  return Value::string(parts[0] + tail, v.markup());
}

Value f_unique(Interp& in, const Value& v, CallArgs& args) {
  Args a("unique", args, {"case_sensitive", "attribute"}, 0);
  const AttrGetter getter(a.get(1, Value::none()), !(a.has(0) && truthy(a[0])));
  DictData seen;
  std::vector<Value> out;
  for (const Value& item : items_of(in, v)) {
    const Value key = getter(in, item);
    if (!seen.find(key)) {
      seen.set(key, Value::none());
      out.push_back(item);
    }
  }
  return generator(std::move(out));
}

Value f_wordcount(Interp&, const Value& v, CallArgs& args) {
  Args a("wordcount", args, {}, 0);
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : uni::decode(soft_str(v))) {
    const bool w = c == '_' || uni::is_alpha(c) || uni::is_decimal(c) || uni::is_digit(c) || uni::is_numeric(c);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None,
// separators=None, sort_keys=False).
Value f_tojson(Interp&, const Value& v, CallArgs& args) {
  Args a("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"}, 0);
  JsonOptions o;
  o.ensure_ascii = a.has(0) && truthy(a[0]);
  if (a.has(1) && !a[1].is_none()) {
    o.pretty = true;
    if (a[1].is_string())
      o.indent = a[1].str();
    else
      o.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, expect_int(a[1], "tojson indent"))), ' ');
    o.item_separator = ",";
  }
  if (a.has(2) && !a[2].is_none()) {
    const Value& sep = a[2];
    if (!sep.is_seq() || sep.items().size() != 2 || !sep.items()[0].is_string() || !sep.items()[1].is_string())
      fail(ErrKind::Type, "tojson separators: expected a pair of strings, got " + repr(sep));
    o.item_separator = sep.items()[0].str();
    o.key_separator = sep.items()[1].str();
  }
  o.sort_keys = a.has(3) && truthy(a[3]);
  return Value::string(json_dumps(v, o));
}

const std::unordered_map<std::string, FilterFn>& filters() {
  static const std::unordered_map<std::string, FilterFn> m = {
      {"abs", f_abs},           {"attr", f_attr},
      {"batch", f_batch},       {"capitalize", f_capitalize},
      {"center", f_center},     {"count", f_length},
      {"d", f_default},         {"default", f_default},
      {"dictsort", f_dictsort}, {"e", f_escape},
      {"escape", f_escape},     {"first", f_first},
      {"float", f_float},       {"forceescape", f_forceescape},
      {"format", f_format},     {"indent", f_indent},
      {"int", f_int},           {"join", f_join},
      {"last", f_last},         {"length", f_length},
      {"list", f_list},         {"lower", f_lower},
      {"items", f_items},       {"map", f_map},
      {"min", f_min},           {"max", f_max},
      {"reject", f_reject},     {"rejectattr", f_rejectattr},
      {"replace", f_replace},   {"reverse", f_reverse},
      {"round", f_round},       {"safe", f_safe},
      {"select", f_select},     {"selectattr", f_selectattr},
      {"slice", f_slice},       {"sort", f_sort},
      {"string", f_string},     {"sum", f_sum},
      {"title", f_title},       {"trim", f_trim},
      {"truncate", f_truncate}, {"unique", f_unique},
      {"upper", f_upper},       {"wordcount", f_wordcount},
      {"tojson", f_tojson},
  };
  return m;
}

// jinja2 filters scalpel does not implement.
const std::vector<std::string>& unimplemented_filters() {
  static const std::vector<std::string> v = {"filesizeformat", "groupby", "pprint", "random", "striptags",
                                             "urlencode",      "urlize",  "wordwrap", "xmlattr"};
  return v;
}

// ---- tests -------------------------------------------------------------------------------

Value py_mod(const Value& a, const Value& b) { return binary_op(BinaryOp::Mod, a, b); }

bool t_odd(Interp&, const Value& v, CallArgs& args) {
  Args a("odd", args, {}, 0);
  return equals(py_mod(v, Value::integer(2)), Value::integer(1));
}
bool t_even(Interp&, const Value& v, CallArgs& args) {
  Args a("even", args, {}, 0);
  return equals(py_mod(v, Value::integer(2)), Value::integer(0));
}
bool t_divisibleby(Interp&, const Value& v, CallArgs& args) {
  Args a("divisibleby", args, {"num"}, 1);
  return equals(py_mod(v, a[0]), Value::integer(0));
}
bool t_defined(Interp&, const Value& v, CallArgs& args) {
  Args a("defined", args, {}, 0);
  return !v.is_undefined();
}
bool t_undefined(Interp&, const Value& v, CallArgs& args) {
  Args a("undefined", args, {}, 0);
  return v.is_undefined();
}
bool t_filter(Interp&, const Value& v, CallArgs& args) {
  Args a("filter", args, {}, 0);
  if (!v.is_string()) return false;
  return filter_availability(v.str()) != Availability::Unknown;
}
bool t_test(Interp&, const Value& v, CallArgs& args) {
  Args a("test", args, {}, 0);
  if (!v.is_string()) return false;
  return test_availability(v.str()) != Availability::Unknown;
}
bool t_none(Interp&, const Value& v, CallArgs& args) {
  Args a("none", args, {}, 0);
  return v.is_none();
}
bool t_boolean(Interp&, const Value& v, CallArgs& args) {
  Args a("boolean", args, {}, 0);
  return v.is_bool();
}
bool t_false(Interp&, const Value& v, CallArgs& args) {
  Args a("false", args, {}, 0);
  return v.is_bool() && !v.as_bool();
}
bool t_true(Interp&, const Value& v, CallArgs& args) {
  Args a("true", args, {}, 0);
  return v.is_bool() && v.as_bool();
}
bool t_integer(Interp&, const Value& v, CallArgs& args) {
  Args a("integer", args, {}, 0);
  return v.is_int();
}
bool t_float(Interp&, const Value& v, CallArgs& args) {
  Args a("float", args, {}, 0);
  return v.is_float();
}
bool t_number(Interp&, const Value& v, CallArgs& args) {
  Args a("number", args, {}, 0);
  return v.is_number();
}
bool t_string(Interp&, const Value& v, CallArgs& args) {
  Args a("string", args, {}, 0);
  return v.is_string();
}
bool t_mapping(Interp&, const Value& v, CallArgs& args) {
  Args a("mapping", args, {}, 0);
  return v.is_dict();
}
bool t_sequence(Interp&, const Value& v, CallArgs& args) {
  Args a("sequence", args, {}, 0);
  if (v.is_undefined() || v.is_string() || v.is_dict()) return true;
  if (v.is_seq()) {
    const SeqKind k = v.seq().kind;
    return k == SeqKind::List || k == SeqKind::Tuple || k == SeqKind::Range;
  }
  return false;
}
bool t_iterable(Interp&, const Value& v, CallArgs& args) {
  Args a("iterable", args, {}, 0);
  return is_iterable(v) || (v.is_object() && v.object().type_name() == "LoopContext");
}
bool t_callable(Interp&, const Value& v, CallArgs& args) {
  Args a("callable", args, {}, 0);
  // jinja2's Undefined defines __call__ (to raise), so callable() is true.
  return v.is_undefined() || (v.is_object() && v.object().callable());
}
bool t_sameas(Interp&, const Value& v, CallArgs& args) {
  Args a("sameas", args, {"other"}, 1);
  const Value& o = a[0];
  if (v.is_none() || o.is_none()) return v.is_none() && o.is_none();
  if (v.is_bool() || o.is_bool()) return v.is_bool() && o.is_bool() && v.as_bool() == o.as_bool();
  if (v.is_int() || v.is_float() || v.is_string() || o.is_int() || o.is_float() || o.is_string())
    unsupported("'sameas' on numbers or strings (their identity depends on CPython internals)");
  return v.type() == o.type() && v.identity() == o.identity() && v.identity() != nullptr;
}
bool t_escaped(Interp&, const Value& v, CallArgs& args) {
  Args a("escaped", args, {}, 0);
  return v.is_string() && v.markup();
}
bool t_in(Interp&, const Value& v, CallArgs& args) {
  Args a("in", args, {"seq"}, 1);
  return contains(a[0], v);
}
bool str_case(const Value& v, bool lower) {
  const std::string s = to_str(v);
  bool cased = false;
  for (char32_t c : uni::decode(s)) {
    if (!uni::is_cased(c)) continue;
    if (lower ? !uni::is_lower(c) : !uni::is_upper(c)) return false;
    cased = true;
  }
  return cased;
}
bool t_lower(Interp&, const Value& v, CallArgs& args) {
  Args a("lower", args, {}, 0);
  return str_case(v, true);
}
bool t_upper(Interp&, const Value& v, CallArgs& args) {
  Args a("upper", args, {}, 0);
  return str_case(v, false);
}

template <CmpOp Op>
bool t_cmp(Interp&, const Value& v, CallArgs& args) {
  Args a("comparison", args, {"other"}, 1);
  switch (Op) {
    case CmpOp::Eq: return equals(v, a[0]);
    case CmpOp::Ne: return !equals(v, a[0]);
    case CmpOp::Lt: return compare(v, a[0], "<") == -1;
    case CmpOp::Le: {
      const int c = compare(v, a[0], "<=");
      return c == -1 || c == 0;
    }
    case CmpOp::Gt: return compare(v, a[0], ">") == 1;
    case CmpOp::Ge: {
      const int c = compare(v, a[0], ">=");
      return c == 1 || c == 0;
    }
    default: return false;
  }
}

const std::unordered_map<std::string, TestFn>& tests() {
  static const std::unordered_map<std::string, TestFn> m = {
      {"odd", t_odd},
      {"even", t_even},
      {"divisibleby", t_divisibleby},
      {"defined", t_defined},
      {"undefined", t_undefined},
      {"filter", t_filter},
      {"test", t_test},
      {"none", t_none},
      {"boolean", t_boolean},
      {"false", t_false},
      {"true", t_true},
      {"integer", t_integer},
      {"float", t_float},
      {"lower", t_lower},
      {"upper", t_upper},
      {"string", t_string},
      {"mapping", t_mapping},
      {"number", t_number},
      {"sequence", t_sequence},
      {"iterable", t_iterable},
      {"callable", t_callable},
      {"sameas", t_sameas},
      {"escaped", t_escaped},
      {"in", t_in},
      {"==", t_cmp<CmpOp::Eq>},
      {"eq", t_cmp<CmpOp::Eq>},
      {"equalto", t_cmp<CmpOp::Eq>},
      {"!=", t_cmp<CmpOp::Ne>},
      {"ne", t_cmp<CmpOp::Ne>},
      {">", t_cmp<CmpOp::Gt>},
      {"gt", t_cmp<CmpOp::Gt>},
      {"greaterthan", t_cmp<CmpOp::Gt>},
      {"ge", t_cmp<CmpOp::Ge>},
      {">=", t_cmp<CmpOp::Ge>},
      {"<", t_cmp<CmpOp::Lt>},
      {"lt", t_cmp<CmpOp::Lt>},
      {"lessthan", t_cmp<CmpOp::Lt>},
      {"<=", t_cmp<CmpOp::Le>},
      {"le", t_cmp<CmpOp::Le>},
  };
  return m;
}

}  // namespace

Availability filter_availability(const std::string& name) {
  if (filters().count(name)) return Availability::Implemented;
  for (const auto& n : unimplemented_filters())
    if (n == name) return Availability::NotImplemented;
  return Availability::Unknown;
}

Availability test_availability(const std::string& name) {
  return tests().count(name) ? Availability::Implemented : Availability::Unknown;
}

Value call_filter(Interp& interp, const std::string& name, const Value& v, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) unsupported("the filter '" + name + "'");
  return it->second(interp, v, args);
}

bool call_test(Interp& interp, const std::string& name, const Value& v, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) unsupported("the test '" + name + "'");
  return it->second(interp, v, args);
}

}  // namespace scalpel::jinja
