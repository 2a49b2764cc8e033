// src/io/jinja/lexer.cpp — see lexer.hpp. The rules follow jinja2's lexer
// (lexer.py): the root state looks for the earliest "{{", "{%" or "{#"; a "-"
// right after the opening strips all whitespace before the tag, otherwise
// lstrip_blocks removes spaces/tabs between the start of a line and a block
// or comment tag; "-%}" strips all whitespace after, "%}" removes one newline
// (trim_blocks), "+%}" keeps it.
#include "io/jinja/lexer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "io/jinja/unicode.hpp"
#include "scalpel/errors.hpp"

namespace scalpel::jinja {

// ---------------------------------------------------------------------------
// SourceMap

SourceMap::SourceMap(std::string name, const std::string& source)
    : name_(std::move(name)), source_(&source) {
  line_starts_.push_back(0);
  for (size_t i = 0; i < source.size(); ++i)
    if (source[i] == '\n') line_starts_.push_back(i + 1);
}

int SourceMap::line(SourcePos pos) const {
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
  return static_cast<int>(it - line_starts_.begin());
}

std::string SourceMap::where(SourcePos pos) const {
  const int ln = line(pos);
  const size_t start = line_starts_[static_cast<size_t>(ln - 1)];
  const size_t end = std::min(pos, source_->size());
  const size_t col = uni::length(source_->substr(start, end > start ? end - start : 0)) + 1;
  return name_ + ":" + std::to_string(ln) + ":" + std::to_string(col);
}

std::string normalize_source(const std::string& raw) {
  std::string s;
  s.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      s.push_back('\n');
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      s.push_back(raw[i]);
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

std::string describe(const Token& t) {
  switch (t.type) {
    case Tok::Data: return "template text";
    case Tok::VarBegin: return "begin of print statement ('{{')";
    case Tok::VarEnd: return "end of print statement ('}}')";
    case Tok::BlockBegin: return "begin of statement block ('{%')";
    case Tok::BlockEnd: return "end of statement block ('%}')";
    case Tok::Name: return "'" + t.text + "'";
    case Tok::String: return "string " + repr_string(t.text);
    case Tok::Int: return "integer " + std::to_string(t.ival);
    case Tok::Float: return "float " + float_repr(t.fval);
    case Tok::Op: return "'" + t.text + "'";
    case Tok::Eof: return "end of template";
  }
  return "token";
}

namespace {

// Decodes the code point at s[i] (valid UTF-8) and its byte length.
char32_t code_point_at(const std::string& s, size_t i, size_t* len) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : 4;
  if (i + n > s.size()) n = 1;
  *len = n;
  return uni::decode(s.substr(i, n))[0];
}

// Length in bytes of the run of (Unicode) whitespace starting at i.
size_t whitespace_run(const std::string& s, size_t i) {
  size_t j = i;
  while (j < s.size()) {
    size_t len;
    if (!uni::is_space(code_point_at(s, j, &len))) break;
    j += len;
  }
  return j - i;
}

// Python str.rstrip(): drops trailing Unicode whitespace.
std::string rstrip_unicode(const std::string& s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t len;
    if (!uni::is_space(code_point_at(s, start, &len))) break;
    end = start;
  }
  return s.substr(0, end);
}

// True when s[from:] is non-empty and all whitespace.
bool all_whitespace(const std::string& s, size_t from) {
  return from < s.size() && whitespace_run(s, from) == s.size() - from;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

class Lexer {
 public:
  Lexer(const std::string& s, const SourceMap& map) : s_(s), map_(map) {}

  std::vector<Token> run() {
    while (pos_ < s_.size()) lex_root();
    Token eof;
    eof.type = Tok::Eof;
    eof.pos = s_.size();
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(SourcePos at, const std::string& msg) const {
    throw FormatError(map_.where(at) + ": " + msg);
  }

  void push(Tok type, SourcePos at, std::string text = "") {
    Token t;
    t.type = type;
    t.pos = at;
    t.text = std::move(text);
    tokens_.push_back(std::move(t));
  }

  // Applies jinja2's OptionalLStrip rule to the text before a tag and emits it.
  void emit_data(size_t from, size_t to, char sign, bool is_variable) {
    std::string text = s_.substr(from, to - from);
    if (sign == '-') {
      text = rstrip_unicode(text);
    } else if (sign != '+' && !is_variable) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && all_whitespace(text, l_pos)) text.resize(l_pos);
    }
    if (!text.empty()) push(Tok::Data, from, std::move(text));
  }

  // Matches "{%[-+]?\s*raw\s*(-%}\s*|%})" at p; returns its end or npos.
  size_t match_raw_begin(size_t p, char* sign) const {
    size_t i = p + 2;
    *sign = 0;
    if (i < s_.size() && (s_[i] == '-' || s_[i] == '+')) *sign = s_[i++];
    i += whitespace_run(s_, i);
    if (s_.compare(i, 3, "raw") != 0) return std::string::npos;
    i += 3;
    i += whitespace_run(s_, i);
    if (s_.compare(i, 3, "-%}") == 0) return i + 3 + whitespace_run(s_, i + 3);
    if (s_.compare(i, 2, "%}") == 0) return i + 2;
    return std::string::npos;
  }

  // Matches "{%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?)" at p.
  size_t match_raw_end(size_t p, char* sign) const {
    if (s_.compare(p, 2, "{%") != 0) return std::string::npos;
    size_t i = p + 2;
    *sign = 0;
    if (i < s_.size() && (s_[i] == '-' || s_[i] == '+')) *sign = s_[i++];
    i += whitespace_run(s_, i);
    if (s_.compare(i, 6, "endraw") != 0) return std::string::npos;
    i += 6;
    i += whitespace_run(s_, i);
    return match_block_end(i);
  }

  // Matches a block end "+%}" | "-%}\s*" | "%}\n?" at i; returns its end or npos.
  size_t match_block_end(size_t i) const {
    if (s_.compare(i, 3, "+%}") == 0) return i + 3;
    if (s_.compare(i, 3, "-%}") == 0) return i + 3 + whitespace_run(s_, i + 3);
    if (s_.compare(i, 2, "%}") == 0) return i + 2 + (i + 2 < s_.size() && s_[i + 2] == '\n' ? 1 : 0);
    return std::string::npos;
  }

  void lex_root() {
    // Earliest tag opening.
    size_t q = pos_;
    while (true) {
      q = s_.find('{', q);
      if (q == std::string::npos || q + 1 >= s_.size()) {
        // The rest is text.
        push(Tok::Data, pos_, s_.substr(pos_));
        pos_ = s_.size();
        return;
      }
      const char c = s_[q + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++q;
    }
    const char kind = s_[q + 1];
    if (kind == '%') {
      char sign;
      const size_t raw_end = match_raw_begin(q, &sign);
      if (raw_end != std::string::npos) {
        emit_data(pos_, q, sign, false);
        line_starting_ = raw_end > 0 && s_[raw_end - 1] == '\n';
        lex_raw(q, raw_end);
        return;
      }
    }
    char sign = 0;
    size_t after = q + 2;
    if (after < s_.size() && (s_[after] == '-' || s_[after] == '+')) sign = s_[after++];
    emit_data(pos_, q, sign, kind == '{');
    line_starting_ = false;
    pos_ = after;
    if (kind == '#') {
      lex_comment(q);
    } else {
      push(kind == '{' ? Tok::VarBegin : Tok::BlockBegin, q);
      lex_tag(kind == '{', q);
    }
  }

  void lex_raw(size_t open, size_t body_start) {
    for (size_t p = s_.find("{%", body_start); p != std::string::npos; p = s_.find("{%", p + 1)) {
      char sign;
      const size_t end = match_raw_end(p, &sign);
      if (end == std::string::npos) continue;
      emit_data(body_start, p, sign, false);
      line_starting_ = end > 0 && s_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    error(open, "expected '{% endraw %}' to close this raw block, got end of template");
  }

  void lex_comment(size_t open) {
    const size_t q = s_.find("#}", pos_);
    if (q == std::string::npos)
      error(open, "expected '#}' to close this comment, got end of template");
    size_t end;
    if (q > pos_ && s_[q - 1] == '-')
      end = q + 2 + whitespace_run(s_, q + 2);
    else if (q > pos_ && s_[q - 1] == '+')
      end = q + 2;
    else
      end = q + 2 + (q + 2 < s_.size() && s_[q + 2] == '\n' ? 1 : 0);
    line_starting_ = s_[end - 1] == '\n';
    pos_ = end;
  }

  // Tokens inside {{ ... }} or {% ... %}.
  void lex_tag(bool variable, size_t open) {
    std::vector<char> balance;  // closing brackets expected
    while (true) {
      if (pos_ >= s_.size())
        error(open, std::string("expected '") + (variable ? "}}" : "%}") +
                        "' to close this tag, got end of template");
      // The end of the tag (only when brackets are balanced, as in jinja2).
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (variable) {
          if (s_.compare(pos_, 3, "-}}") == 0)
            end = pos_ + 3 + whitespace_run(s_, pos_ + 3);
          else if (s_.compare(pos_, 2, "}}") == 0)
            end = pos_ + 2;
        } else {
          end = match_block_end(pos_);
        }
        if (end != std::string::npos) {
          push(variable ? Tok::VarEnd : Tok::BlockEnd, pos_);
          line_starting_ = s_[end - 1] == '\n';
          pos_ = end;
          return;
        }
      }
      const size_t ws = whitespace_run(s_, pos_);
      if (ws) {
        pos_ += ws;
        continue;
      }
      if (lex_number()) continue;
      const char c = s_[pos_];
      if (is_name_start(c)) {
        size_t j = pos_ + 1;
        while (j < s_.size() && is_name_char(s_[j])) ++j;
        push(Tok::Name, pos_, s_.substr(pos_, j - pos_));
        pos_ = j;
        continue;
      }
      if (c == '\'' || c == '"') {
        lex_string();
        continue;
      }
      lex_operator(balance);
    }
  }

  // Digits with single '_' separators: (\d+_)*\d+ . Returns the end or npos.
  size_t digit_run(size_t i) const {
    if (i >= s_.size() || !is_digit(s_[i])) return std::string::npos;
    size_t j = i;
    while (true) {
      while (j < s_.size() && is_digit(s_[j])) ++j;
      if (j + 1 < s_.size() && s_[j] == '_' && is_digit(s_[j + 1])) {
        ++j;
        continue;
      }
      return j;
    }
  }

  static std::string without_underscores(const std::string& s) {
    std::string r;
    for (char c : s)
      if (c != '_') r.push_back(c);
    return r;
  }

  bool lex_number() {
    const size_t start = pos_;
    if (!is_digit(s_[start])) return false;
    // Float first (jinja2 tries its float rule before the integer rule); the
    // rule does not apply right after a '.'.
    if (start == 0 || s_[start - 1] != '.') {
      const size_t int_end = digit_run(start);
      size_t frac_end = std::string::npos;
      if (int_end < s_.size() && s_[int_end] == '.') frac_end = digit_run(int_end + 1);
      auto exponent_end = [&](size_t i) -> size_t {
        if (i >= s_.size() || (s_[i] != 'e' && s_[i] != 'E')) return std::string::npos;
        ++i;
        if (i < s_.size() && (s_[i] == '+' || s_[i] == '-')) ++i;
        return digit_run(i);
      };
      size_t end = std::string::npos;
      if (frac_end != std::string::npos) end = exponent_end(frac_end);
      if (end == std::string::npos) end = exponent_end(int_end);
      if (end == std::string::npos) end = frac_end;
      if (end != std::string::npos) {
        const std::string text = without_underscores(s_.substr(start, end - start));
        Token t;
        t.type = Tok::Float;
        t.pos = start;
        t.fval = std::strtod(text.c_str(), nullptr);
        tokens_.push_back(t);
        pos_ = end;
        return true;
      }
    }
    // Integer: 0b.., 0o.., 0x.., [1-9](_?\d)*, 0(_?0)*.
    int base = 10;
    size_t i = start;
    size_t end;
    if (s_[i] == '0' && i + 1 < s_.size() && std::string("bBoOxX").find(s_[i + 1]) != std::string::npos) {
      const char p = static_cast<char>(s_[i + 1] | 0x20);
      base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
      auto ok = [&](char c) {
        if (base == 2) return c == '0' || c == '1';
        if (base == 8) return c >= '0' && c <= '7';
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      };
      size_t j = i + 2;
      size_t last = std::string::npos;
      while (j < s_.size()) {
        if (ok(s_[j])) {
          last = ++j;
        } else if (s_[j] == '_' && j + 1 < s_.size() && ok(s_[j + 1])) {
          ++j;
        } else {
          break;
        }
      }
      if (last == std::string::npos) {
        // "0" followed by a name ("0x" alone): the integer is just 0.
        base = 10;
        end = i + 1;
      } else {
        end = last;
        i += 2;
      }
    } else if (s_[i] == '0') {
      size_t j = i + 1;
      while (j < s_.size()) {
        if (s_[j] == '0')
          ++j;
        else if (s_[j] == '_' && j + 1 < s_.size() && s_[j + 1] == '0')
          j += 2;
        else
          break;
      }
      end = j;
    } else {
      end = digit_run(i);
    }
    const std::string digits = without_underscores(s_.substr(i, end - i));
    errno = 0;
    const unsigned long long v = std::strtoull(digits.c_str(), nullptr, base);
    if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX))
      throw Unsupported(map_.where(start) + ": integer literal " + s_.substr(start, end - start) +
                        ": expected a value that fits in 64 bits, got a larger one (see docs/chat_templates.md)");
    Token t;
    t.type = Tok::Int;
    t.pos = start;
    t.ival = static_cast<int64_t>(v);
    tokens_.push_back(t);
    pos_ = end;
    return true;
  }

  // Python's "unicode-escape" decoding of a string literal's body, as jinja2
  // applies it (after encoding non-ASCII characters with backslashreplace).
  void lex_string() {
    const size_t start = pos_;
    const char quote = s_[pos_];
    size_t j = pos_ + 1;
    while (j < s_.size() && s_[j] != quote) {
      if (s_[j] == '\\') ++j;
      ++j;
    }
    if (j >= s_.size())
      error(start, std::string("expected a closing ") + quote + " for this string, got end of template");
    const std::string body = s_.substr(pos_ + 1, j - pos_ - 1);
    pos_ = j + 1;
    std::string out;
    for (size_t i = 0; i < body.size();) {
      const char c = body[i];
      if (c != '\\') {
        out.push_back(c);
        ++i;
        continue;
      }
      // body never ends with a lone backslash (the scan above skips the
      // character after each backslash).
      const char e = body[i + 1];
      i += 2;
      auto hex = [&](size_t n, const char* what) -> char32_t {
        if (i + n > body.size()) error(start, std::string("string literal: truncated ") + what + " escape");
        char32_t v = 0;
        for (size_t k = 0; k < n; ++k) {
          const char h = body[i + k];
          int d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
          if (d < 0) error(start, std::string("string literal: truncated ") + what + " escape");
          v = v * 16 + static_cast<char32_t>(d);
        }
        i += n;
        return v;
      };
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x': uni::append(out, hex(2, "\\xXX")); break;
        case 'u': uni::append(out, hex(4, "\\uXXXX")); break;
        case 'U': {
          const char32_t v = hex(8, "\\UXXXXXXXX");
          if (v > 0x10FFFF) error(start, "string literal: illegal Unicode character");
          uni::append(out, v);
          break;
        }
        case 'N':
          throw Unsupported(map_.where(start) +
                            ": string literal: \\N{...} escapes are outside the chat-template subset "
                            "scalpel implements (see docs/chat_templates.md)");
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i < body.size() && body[i] >= '0' && body[i] <= '7'; ++k, ++i)
              v = v * 8 + static_cast<char32_t>(body[i] - '0');
            uni::append(out, v);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            // "\é": backslashreplace turned é into "\xe9", so the backslash
            // escapes the replacement's backslash: the result is the text "\xe9".
            size_t len;
            const char32_t cp = code_point_at(body, i - 1, &len);
            i = i - 1 + len;
            uni::append_python_escape(out, cp);
          } else {
            out.push_back('\\');
            out.push_back(e);
          }
      }
    }
    Token t;
    t.type = Tok::String;
    t.pos = start;
    t.text = std::move(out);
    tokens_.push_back(std::move(t));
  }

  void lex_operator(std::vector<char>& balance) {
    static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%",
                                       "~",  "[",  "]",  "(",  ")",  "{",  "}", "=", ".", ":", "|",
                                       ",",  ";",  ">",  "<"};
    for (const char* op : kOps) {
      const size_t n = std::char_traits<char>::length(op);
      if (s_.compare(pos_, n, op) != 0) continue;
      const char c = op[0];
      if (n == 1 && (c == '(' || c == '[' || c == '{')) {
        balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (n == 1 && (c == ')' || c == ']' || c == '}')) {
        if (balance.empty()) error(pos_, std::string("unexpected '") + c + "'");
        if (balance.back() != c)
          error(pos_, std::string("expected '") + balance.back() + "', got '" + c + "'");
        balance.pop_back();
      }
      push(Tok::Op, pos_, op);
      pos_ += n;
      return;
    }
    size_t len;
    const char32_t cp = code_point_at(s_, pos_, &len);
    std::string ch;
    uni::append(ch, cp);
    error(pos_, "expected an expression or the end of the tag, got unexpected character '" + ch + "'");
  }

  const std::string& s_;
  const SourceMap& map_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source, const SourceMap& map) {
  return Lexer(source, map).run();
}

}  // namespace scalpel::jinja
