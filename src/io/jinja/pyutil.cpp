// src/io/jinja/pyutil.cpp — Python str algorithms on UTF-8 text (strip,
// split, splitlines, replace, padding), number parsing as float()/int() do
// it, and argument binding for the built-ins.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "io/jinja/interp.hpp"
#include "io/jinja/unicode.hpp"

namespace scalpel::jinja {

// ---------------------------------------------------------------------------
// Argument binding

Args::Args(const std::string& func, const CallArgs& a, std::initializer_list<const char*> names, size_t required)
    : values_(names.size()), given_(names.size(), false) {
  const std::vector<const char*> n(names);
  if (a.pos.size() > n.size())
    fail(ErrKind::Type, func + "() takes at most " + std::to_string(n.size()) + " argument(s) (" +
                            std::to_string(a.pos.size()) + " given)");
  for (size_t i = 0; i < a.pos.size(); ++i) {
    values_[i] = a.pos[i];
    given_[i] = true;
  }
  for (const auto& kw : a.kw) {
    size_t idx = n.size();
    for (size_t i = 0; i < n.size(); ++i)
      if (kw.first == n[i]) idx = i;
    if (idx == n.size()) fail(ErrKind::Type, func + "() got an unexpected keyword argument '" + kw.first + "'");
    if (given_[idx]) fail(ErrKind::Type, func + "() got multiple values for argument '" + kw.first + "'");
    values_[idx] = kw.second;
    given_[idx] = true;
  }
  for (size_t i = 0; i < required; ++i)
    if (!given_[i]) fail(ErrKind::Type, func + "() missing required argument '" + n[i] + "'");
}

int64_t expect_int(const Value& v, const std::string& what) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_integral())
    fail(ErrKind::Type, what + ": expected an integer, got " + type_name(v));
  return v.as_int();
}

const std::string& expect_str(const Value& v, const std::string& what) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string()) fail(ErrKind::Type, what + ": expected a string, got " + type_name(v));
  return v.str();
}

namespace pystr {

std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  const std::u32string u = uni::decode(s);
  std::u32string set;
  const bool whitespace = chars.is_none() || chars.is_undefined();
  if (!whitespace) set = uni::decode(expect_str(chars, "strip"));
  auto strip_it = [&](char32_t c) {
    return whitespace ? uni::is_space(c) : set.find(c) != std::u32string::npos;
  };
  size_t a = 0, b = u.size();
  if (left)
    while (a < b && strip_it(u[a])) ++a;
  if (right)
    while (b > a && strip_it(u[b - 1])) --b;
  return uni::encode(u.substr(a, b - a));
}

std::vector<std::string> split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> out;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep.is_none()) {
    // Runs of whitespace separate; leading/trailing whitespace is ignored.
    const std::u32string u = uni::decode(s);
    if (!from_right) {
      size_t i = 0;
      const size_t n = u.size();
      while (true) {
        while (i < n && uni::is_space(u[i])) ++i;
        if (i >= n) break;
        if (static_cast<int64_t>(out.size()) == maxsplit) {
          size_t end = n;
          while (end > i && uni::is_space(u[end - 1])) --end;
          out.push_back(uni::encode(u.substr(i, end - i)));
          break;
        }
        size_t j = i;
        while (j < n && !uni::is_space(u[j])) ++j;
        out.push_back(uni::encode(u.substr(i, j - i)));
        i = j;
      }
    } else {
      size_t i = u.size();
      while (true) {
        while (i > 0 && uni::is_space(u[i - 1])) --i;
        if (i == 0) break;
        if (static_cast<int64_t>(out.size()) == maxsplit) {
          size_t start = 0;
          while (start < i && uni::is_space(u[start])) ++start;
          out.push_back(uni::encode(u.substr(start, i - start)));
          break;
        }
        size_t j = i;
        while (j > 0 && !uni::is_space(u[j - 1])) --j;
        out.push_back(uni::encode(u.substr(j, i - j)));
        i = j;
      }
      std::reverse(out.begin(), out.end());
    }
    return out;
  }
  const std::string& d = expect_str(sep, "split");
  if (d.empty()) fail(ErrKind::Value, "empty separator");
  if (!from_right) {
    size_t i = 0;
    int64_t n = 0;
    while (n < maxsplit) {
      const size_t j = s.find(d, i);
      if (j == std::string::npos) break;
      out.push_back(s.substr(i, j - i));
      i = j + d.size();
      ++n;
    }
    out.push_back(s.substr(i));
  } else {
    size_t end = s.size();
    int64_t n = 0;
    while (n < maxsplit && end >= d.size()) {
      const size_t j = s.rfind(d, end - d.size());
      if (j == std::string::npos) break;
      out.push_back(s.substr(j + d.size(), end - j - d.size()));
      end = j;
      ++n;
    }
    out.push_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
  }
  return out;
}

std::vector<std::string> splitlines(const std::string& s, bool keepends) {
  // Python's line boundaries: \n \r \r\n \v \f \x1c \x1d \x1e \x85 \u2028 \u2029.
  const std::u32string u = uni::decode(s);
  std::vector<std::string> out;
  size_t i = 0, start = 0;
  const size_t n = u.size();
  while (i < n) {
    const char32_t c = u[i];
    const bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
                     c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      ++i;
      continue;
    }
    size_t eol = i + 1;
    if (c == '\r' && eol < n && u[eol] == '\n') ++eol;
    out.push_back(uni::encode(u.substr(start, (keepends ? eol : i) - start)));
    start = i = eol;
  }
  if (start < n) out.push_back(uni::encode(u.substr(start)));
  return out;
}

std::string replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count) {
  if (count < 0) count = INT64_MAX;
  std::string out;
  if (old.empty()) {
    // Inserted before every character and at the end.
    const std::u32string u = uni::decode(s);
    int64_t n = 0;
    for (size_t i = 0; i <= u.size(); ++i) {
      if (n < count) {
        out += repl;
        ++n;
      }
      if (i < u.size()) uni::append(out, u[i]);
    }
    return out;
  }
  size_t i = 0;
  int64_t n = 0;
  while (n < count) {
    const size_t j = s.find(old, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i);
    out += repl;
    i = j + old.size();
    ++n;
    if (out.size() > kMaxOutputBytes) fail(ErrKind::Limit, "replace: result too large");
  }
  out.append(s, i, std::string::npos);
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string pad(const std::string& s, int64_t width, char32_t fill, int align) {
  const int64_t len = static_cast<int64_t>(uni::length(s));
  if (width <= len) return s;
  if (width > static_cast<int64_t>(kMaxOutputBytes)) fail(ErrKind::Limit, "padding: width too large");
  const int64_t total = width - len;
  int64_t left = 0;
  if (align > 0) {
    left = total;
  } else if (align == 0) {
    // str.center: the extra space goes left when the padding and the width
    // are both odd (CPython: left = pad/2 + (pad & width & 1)).
    left = total / 2 + (total & width & 1);
  }
  std::string f;
  uni::append(f, fill);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += f;
  out += s;
  for (int64_t i = 0; i < total - left; ++i) out += f;
  return out;
}

}  // namespace pystr

// ---------------------------------------------------------------------------
// float() and int() of strings

namespace {

// Strips Python whitespace and validates underscores between digits; returns
// the text without underscores, or false.
bool clean_number_text(const std::string& in, std::string* out, bool allow_underscores) {
  std::string t = pystr::strip(in, Value::none(), true, true);
  std::string r;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (static_cast<unsigned char>(c) >= 0x80) return false;  // non-ASCII digits: not supported here
    if (c == '_') {
      if (!allow_underscores) return false;
      auto alnum = [](char x) { return std::isalnum(static_cast<unsigned char>(x)) != 0; };
      if (i == 0 || i + 1 >= t.size() || !alnum(t[i - 1]) || !alnum(t[i + 1])) return false;
      continue;
    }
    r.push_back(c);
  }
  *out = r;
  return true;
}

}  // namespace

bool parse_py_float(const std::string& s, double* out) {
  std::string t;
  if (!clean_number_text(s, &t, true) || t.empty()) return false;
  std::string lower;
  for (char c : t) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  size_t p = 0;
  double sign = 1.0;
  if (lower[0] == '+' || lower[0] == '-') {
    sign = lower[0] == '-' ? -1.0 : 1.0;
    p = 1;
  }
  const std::string body = lower.substr(p);
  if (body == "inf" || body == "infinity") {
    *out = sign * INFINITY;
    return true;
  }
  if (body == "nan") {
    *out = std::copysign(NAN, sign);
    return true;
  }
  // Digits, optional fraction, optional exponent; no hex, no other forms.
  size_t i = 0;
  bool digits = false;
  while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, digits = true;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, digits = true;
  }
  if (!digits) return false;
  if (i < body.size() && body[i] == 'e') {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
    const size_t e0 = i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i;
    if (i == e0) return false;
  }
  if (i != body.size()) return false;
  *out = sign * std::strtod(body.c_str(), nullptr);
  return true;
}

bool parse_py_int(const std::string& s, int base, int64_t* out) {
  std::string t;
  if (!clean_number_text(s, &t, true) || t.empty()) return false;
  size_t p = 0;
  bool neg = false;
  if (t[0] == '+' || t[0] == '-') {
    neg = t[0] == '-';
    p = 1;
  }
  std::string body = t.substr(p);
  auto has_prefix = [&](char c) {
    return body.size() > 2 && body[0] == '0' && std::tolower(static_cast<unsigned char>(body[1])) == c;
  };
  if (base == 0) {
    base = has_prefix('x') ? 16 : has_prefix('o') ? 8 : has_prefix('b') ? 2 : 10;
    if (base == 10 && body.size() > 1 && body[0] == '0' && body.find_first_not_of('0') != std::string::npos)
      return false;  // "010" is invalid with base 0
  }
  if ((base == 16 && has_prefix('x')) || (base == 8 && has_prefix('o')) || (base == 2 && has_prefix('b')))
    body = body.substr(2);
  if (body.empty() || base < 2 || base > 36) return false;
  for (char c : body) {
    const int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                  : std::isalpha(static_cast<unsigned char>(c)) ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                                                                : 99;
    if (d >= base) return false;
  }
  errno = 0;
  const unsigned long long v = std::strtoull(body.c_str(), nullptr, base);
  if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX) + (neg ? 1ULL : 0ULL))
    fail(ErrKind::Limit, "integer overflow (scalpel integers are 64-bit)");
  *out = neg ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  return true;
}

}  // namespace scalpel::jinja
