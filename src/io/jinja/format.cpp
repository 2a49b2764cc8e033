// src/io/jinja/format.cpp — Python string formatting: `fmt % args` (also the
// `format` filter) and str.format(), for the common conversions. Anything
// rarer (nested replacement fields, locale-aware 'n', ...) is refused as
// unsupported rather than approximated.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "io/jinja/interp.hpp"
#include "io/jinja/unicode.hpp"

namespace scalpel::jinja {
namespace {

std::string cformat(const std::string& spec, double d) {
  char buf[512];
  std::snprintf(buf, sizeof buf, spec.c_str(), d);
  return buf;
}

std::string cformat_int(const std::string& spec, long long i) {
  char buf[128];
  std::snprintf(buf, sizeof buf, spec.c_str(), i);
  return buf;
}

// Pads to `width` characters (code points), left-justified when `left`.
std::string pad_to(const std::string& s, int64_t width, bool left) {
  return pystr::pad(s, width, ' ', left ? -1 : 1);
}

std::string truncate_chars(const std::string& s, int64_t n) {
  if (n < 0) return s;
  const std::u32string u = uni::decode(s);
  if (static_cast<int64_t>(u.size()) <= n) return s;
  return uni::encode(u.substr(0, static_cast<size_t>(n)));
}

double as_real(const Value& v, char conv) {
  if (v.is_number()) return v.as_double();
  fail(ErrKind::Type, std::string("%") + conv + " format: a real number is required, not " + type_name(v));
}

}  // namespace

std::string percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> positional;
  const bool tuple = args.is_tuple();
  const bool mapping = args.is_dict();
  // Python treats any non-tuple, non-str argument with __getitem__ as a
  // mapping: then unused arguments are not an error.
  const bool mapping_like = mapping || args.is_undefined() ||
                            (args.is_seq() && !tuple &&
                             (args.seq().kind == SeqKind::List || args.seq().kind == SeqKind::Range));
  if (tuple)
    positional = args.items();
  else
    positional.push_back(args);
  size_t next_arg = 0;
  auto take = [&]() -> Value {
    if (next_arg >= positional.size()) fail(ErrKind::Type, "not enough arguments for format string");
    return positional[next_arg++];
  };
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (++i >= fmt.size()) fail(ErrKind::Value, "incomplete format");
    Value value;
    bool have_value = false;
    if (fmt[i] == '(') {
      if (!mapping) {
        if (mapping_like) fail(ErrKind::Type, "list indices must be integers or slices, not str");
        fail(ErrKind::Type, "format requires a mapping");
      }
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) fail(ErrKind::Value, "incomplete format key");
      const Value key = Value::string(fmt.substr(i + 1, close - i - 1));
      const Value* v = args.dict().find(key);
      if (!v) fail(ErrKind::Value, "KeyError: " + repr(key));
      value = *v;
      have_value = true;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::strchr("-+ #0", fmt[i])) flags.push_back(fmt[i++]);
    int64_t width = -1, precision = -1;
    if (i < fmt.size() && fmt[i] == '*') {
      width = expect_int(take(), "* width");
      ++i;
    } else {
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])))
        width = (width < 0 ? 0 : width) * 10 + (fmt[i++] - '0');
    }
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      precision = 0;
      if (i < fmt.size() && fmt[i] == '*') {
        precision = expect_int(take(), "* precision");
        ++i;
      } else {
        while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) precision = precision * 10 + (fmt[i++] - '0');
      }
    }
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) fail(ErrKind::Value, "incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (width > 100000 || precision > 1000) fail(ErrKind::Limit, "format: width or precision too large");
    if (!have_value) value = take();
    const bool left = flags.find('-') != std::string::npos;
    std::string cflags;
    for (char f : flags)
      if (f != '#' || (conv != 'o')) cflags.push_back(f);
    const std::string w = width >= 0 ? std::to_string(width) : "";
    const std::string p = precision >= 0 ? "." + std::to_string(precision) : "";
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        std::string s = conv == 's' ? to_str(value) : repr(value);
        out += pad_to(truncate_chars(s, precision), width, left);
        break;
      }
      case 'd':
      case 'i':
      case 'u': {
        if (!value.is_number())
          fail(ErrKind::Type, std::string("%") + conv + " format: a real number is required, not " + type_name(value));
        long long n;
        if (value.is_float()) {
          const double d = value.as_double();
          if (!std::isfinite(d)) fail(ErrKind::Value, "cannot convert float infinity or NaN to integer");
          n = static_cast<long long>(std::trunc(d));
        } else {
          n = value.as_int();
        }
        out += cformat_int("%" + cflags + w + p + "lld", n);
        break;
      }
      case 'x':
      case 'X':
      case 'o': {
        if (!value.is_integral())
          fail(ErrKind::Type, std::string("%") + conv + " format: an integer is required, not " + type_name(value));
        const long long n = value.as_int();
        const unsigned long long mag = n < 0 ? 0ULL - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
        std::string digits = cformat_int(std::string("%") + p + (conv == 'o' ? "llo" : conv == 'x' ? "llx" : "llX"),
                                         static_cast<long long>(mag));
        std::string prefix;
        if (flags.find('#') != std::string::npos) prefix = conv == 'o' ? "0o" : conv == 'x' ? "0x" : "0X";
        std::string sign = n < 0 ? "-" : flags.find('+') != std::string::npos ? "+" : flags.find(' ') != std::string::npos ? " " : "";
        std::string body = sign + prefix + digits;
        if (!left && flags.find('0') != std::string::npos && static_cast<int64_t>(body.size()) < width)
          body = sign + prefix + std::string(static_cast<size_t>(width) - body.size(), '0') + digits;
        out += pad_to(body, width, left);
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G': {
        const double d = as_real(value, conv);
        std::string s = cformat("%" + cflags + w + p + conv, d);
        out += s;
        break;
      }
      case 'c': {
        std::string s;
        if (value.is_integral()) {
          uni::append(s, static_cast<char32_t>(value.as_int()));
        } else if (value.is_string() && uni::length(value.str()) == 1) {
          s = value.str();
        } else {
          fail(ErrKind::Type, "%c requires int or char");
        }
        out += pad_to(s, width, left);
        break;
      }
      default: unsupported(std::string("the %-format conversion '%") + conv + "'");
    }
  }
  if (!mapping_like && next_arg < positional.size())
    fail(ErrKind::Type, "not all arguments converted during string formatting");
  return out;
}

// ---------------------------------------------------------------------------
// str.format

namespace {

struct Spec {
  char32_t fill = ' ';
  char align = 0;  // '<' '>' '^' '=' or 0
  char sign = '-';
  bool alternate = false;
  int64_t width = -1;
  char grouping = 0;
  int64_t precision = -1;
  char type = 0;
};

Spec parse_spec(const std::string& text) {
  Spec s;
  const std::u32string u = uni::decode(text);
  size_t i = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (u.size() >= 2 && is_align(u[1])) {
    s.fill = u[0];
    s.align = static_cast<char>(u[1]);
    i = 2;
  } else if (!u.empty() && is_align(u[0])) {
    s.align = static_cast<char>(u[0]);
    i = 1;
  }
  if (i < u.size() && (u[i] == '+' || u[i] == '-' || u[i] == ' ')) s.sign = static_cast<char>(u[i++]);
  if (i < u.size() && u[i] == '#') {
    s.alternate = true;
    ++i;
  }
  if (i < u.size() && u[i] == '0') {
    if (!s.align) {
      s.fill = '0';
      s.align = '=';
    }
    ++i;
  }
  while (i < u.size() && u[i] >= '0' && u[i] <= '9') s.width = (s.width < 0 ? 0 : s.width) * 10 + (u[i++] - '0');
  if (i < u.size() && (u[i] == ',' || u[i] == '_')) s.grouping = static_cast<char>(u[i++]);
  if (i < u.size() && u[i] == '.') {
    ++i;
    s.precision = 0;
    if (i >= u.size() || u[i] < '0' || u[i] > '9') fail(ErrKind::Value, "Format specifier missing precision");
    while (i < u.size() && u[i] >= '0' && u[i] <= '9') s.precision = s.precision * 10 + (u[i++] - '0');
  }
  if (i < u.size()) s.type = static_cast<char>(u[i++]);
  if (i != u.size()) fail(ErrKind::Value, "Invalid format specifier '" + text + "'");
  if (s.width > 100000 || s.precision > 1000) fail(ErrKind::Limit, "format: width or precision too large");
  return s;
}

std::string group_digits(const std::string& digits, char sep) {
  if (!sep) return digits;
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) out.push_back(sep);
    out.push_back(digits[i]);
  }
  return out;
}

std::string align_text(const std::string& sign, const std::string& body, const Spec& s, char default_align) {
  const char align = s.align ? s.align : default_align;
  const int64_t len = static_cast<int64_t>(uni::length(sign + body));
  if (s.width <= len) return sign + body;
  std::string fill;
  uni::append(fill, s.fill);
  const int64_t total = s.width - len;
  auto rep = [&](int64_t n) {
    std::string r;
    for (int64_t k = 0; k < n; ++k) r += fill;
    return r;
  };
  switch (align) {
    case '<': return sign + body + rep(total);
    case '^': return rep(total / 2) + sign + body + rep(total - total / 2);
    case '=': return sign + rep(total) + body;
    default: return rep(total) + sign + body;
  }
}

std::string format_value(const Value& v, const std::string& spec_text) {
  if (spec_text.empty()) return to_str(v);
  const Spec s = parse_spec(spec_text);
  if (v.is_string()) {
    if (s.type && s.type != 's') fail(ErrKind::Value, std::string("Unknown format code '") + s.type + "' for object of type 'str'");
    if (s.align == '=') fail(ErrKind::Value, "'=' alignment not allowed in string format specifier");
    return align_text("", truncate_chars(v.str(), s.precision), s, '<');
  }
  if (v.is_integral() && (s.type == 0 || std::strchr("dbxXoc", s.type))) {
    const int64_t n = v.as_int();
    const unsigned long long mag = n < 0 ? 0ULL - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
    std::string digits;
    std::string prefix;
    switch (s.type) {
      case 'x': digits = cformat_int("%llx", static_cast<long long>(mag)); prefix = s.alternate ? "0x" : ""; break;
      case 'X': digits = cformat_int("%llX", static_cast<long long>(mag)); prefix = s.alternate ? "0X" : ""; break;
      case 'o': digits = cformat_int("%llo", static_cast<long long>(mag)); prefix = s.alternate ? "0o" : ""; break;
      case 'b': {
        unsigned long long m = mag;
        do {
          digits.insert(digits.begin(), static_cast<char>('0' + (m & 1)));
          m >>= 1;
        } while (m);
        prefix = s.alternate ? "0b" : "";
        break;
      }
      case 'c': {
        std::string c;
        uni::append(c, static_cast<char32_t>(n));
        return align_text("", c, s, '<');
      }
      default: digits = group_digits(std::to_string(mag), s.grouping);
    }
    if (s.precision >= 0) fail(ErrKind::Value, "Precision not allowed in integer format specifier");
    const std::string sign = n < 0 ? "-" : s.sign == '+' ? "+" : s.sign == ' ' ? " " : "";
    return align_text(sign + prefix, digits, s, '>');
  }
  if (v.is_number() && (s.type == 0 || std::strchr("eEfFgG%", s.type))) {
    double d = v.as_double();
    std::string body;
    char type = s.type;
    if (type == 0) {
      if (s.precision < 0) {
        body = float_repr(std::fabs(d));
      } else {
        unsupported("a float format specifier with a precision and no type");
      }
    } else {
      const int64_t prec = s.precision < 0 ? 6 : s.precision;
      std::string cspec = std::string("%") + (s.alternate ? "#" : "") + "." + std::to_string(prec);
      if (type == '%') {
        body = cformat(cspec + "f", std::fabs(d) * 100.0) + "%";
      } else {
        body = cformat(cspec + type, std::fabs(d));
      }
    }
    if (s.grouping) {
      const size_t dot = body.find_first_not_of("0123456789");
      body = group_digits(body.substr(0, dot), s.grouping) + (dot == std::string::npos ? "" : body.substr(dot));
    }
    const bool neg = std::signbit(d) && !std::isnan(d);
    const std::string sign = neg ? "-" : s.sign == '+' ? "+" : s.sign == ' ' ? " " : "";
    return align_text(sign, body, s, '>');
  }
  if (v.is_number())
    fail(ErrKind::Value, std::string("Unknown format code '") + s.type + "' for object of type '" + type_name(v) + "'");
  fail(ErrKind::Type, "unsupported format string passed to " + type_name(v) + ".__format__");
}

}  // namespace

std::string brace_format(Interp& interp, const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  bool used_auto = false, used_manual = false;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      fail(ErrKind::Value, "Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    // Replacement field up to the matching '}' (no nested fields).
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) fail(ErrKind::Value, "Single '{' encountered in format string");
    const std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find('{') != std::string::npos) unsupported("nested replacement fields in str.format()");
    i = close;
    std::string name = field, conv, spec;
    const size_t colon = name.find(':');
    if (colon != std::string::npos) {
      spec = name.substr(colon + 1);
      name = name.substr(0, colon);
    }
    const size_t bang = name.find('!');
    if (bang != std::string::npos) {
      conv = name.substr(bang + 1);
      name = name.substr(0, bang);
      if (conv != "s" && conv != "r" && conv != "a")
        fail(ErrKind::Value, "Unknown conversion specifier " + conv);
    }
    // First part: index or keyword; then .attr / [key] accessors.
    size_t p = 0;
    while (p < name.size() && name[p] != '.' && name[p] != '[') ++p;
    const std::string head = name.substr(0, p);
    Value v;
    if (head.empty()) {
      if (used_manual) fail(ErrKind::Value, "cannot switch from manual field specification to automatic field numbering");
      used_auto = true;
      if (auto_index >= args.pos.size()) fail(ErrKind::Value, "Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
      v = args.pos[auto_index++];
    } else if (std::all_of(head.begin(), head.end(), [](char x) { return x >= '0' && x <= '9'; })) {
      if (used_auto) fail(ErrKind::Value, "cannot switch from automatic field numbering to manual field specification");
      used_manual = true;
      const size_t idx = static_cast<size_t>(std::stoull(head));
      if (idx >= args.pos.size()) fail(ErrKind::Value, "Replacement index " + head + " out of range for positional args tuple");
      v = args.pos[idx];
    } else {
      bool found = false;
      for (const auto& kw : args.kw)
        if (kw.first == head) {
          v = kw.second;
          found = true;
        }
      if (!found) fail(ErrKind::Value, "KeyError: " + repr_string(head));
    }
    while (p < name.size()) {
      if (name[p] == '.') {
        size_t q = p + 1;
        while (q < name.size() && name[q] != '.' && name[q] != '[') ++q;
        v = interp.getattr(v, name.substr(p + 1, q - p - 1));
        p = q;
      } else {
        const size_t q = name.find(']', p);
        if (q == std::string::npos) fail(ErrKind::Value, "Missing ']' in format string");
        const std::string key = name.substr(p + 1, q - p - 1);
        const bool digits = !key.empty() && std::all_of(key.begin(), key.end(), [](char x) { return x >= '0' && x <= '9'; });
        v = interp.getitem(v, digits ? Value::integer(std::stoll(key)) : Value::string(key));
        p = q + 1;
      }
    }
    if (conv == "s") v = Value::string(to_str(v));
    if (conv == "r" || conv == "a") v = Value::string(repr(v));
    out += format_value(v, spec);
  }
  return out;
}

}  // namespace scalpel::jinja
