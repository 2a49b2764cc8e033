// src/io/jinja/unicode.cpp — see unicode.hpp.
#include "io/jinja/unicode.hpp"

#include "io/unicode.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <iterator>

namespace scalpel::jinja::uni {
namespace {

struct CpRange {
  char32_t first, last;
};
// A run of code points first, first+stride, ..., last that all map to
// (code point + delta).
struct CaseRun {
  char32_t first, last;
  int32_t delta;
  int32_t stride;
};
// A code point whose mapping has several code points (0-terminated).
struct CaseMulti {
  char32_t cp;
  char32_t out[3];
};

#include "io/jinja/unicode_data.inc"

template <size_t N>
bool in_ranges(const CpRange (&table)[N], char32_t c) {
  // Binary search for the last range starting at or before c.
  const CpRange* end = table + N;
  const CpRange* it =
      std::upper_bound(table, end, c, [](char32_t v, const CpRange& r) { return v < r.first; });
  if (it == table) return false;
  --it;
  return c <= it->last;
}

template <size_t R, size_t M>
void map_case(const CaseRun (&runs)[R], const CaseMulti (&multi)[M], std::u32string& out,
              char32_t c) {
  for (const CaseMulti& m : multi) {
    if (m.cp == c) {
      for (char32_t x : m.out)
        if (x != 0) out.push_back(x);
      return;
    }
  }
  const CaseRun* end = runs + R;
  const CaseRun* it =
      std::upper_bound(runs, end, c, [](char32_t v, const CaseRun& r) { return v < r.first; });
  if (it != runs) {
    --it;
    if (c <= it->last && (c - it->first) % static_cast<char32_t>(it->stride) == 0) {
      out.push_back(static_cast<char32_t>(static_cast<int64_t>(c) + it->delta));
      return;
    }
  }
  out.push_back(c);
}

// Python's final-sigma rule for lower(): a capital sigma becomes 'ς' when it
// ends a word (preceded by a cased letter, not followed by one; case-ignorable
// characters are skipped on both sides).
bool is_final_sigma(const std::u32string& s, size_t i) {
  size_t j = i;
  bool before = false;
  while (j > 0) {
    --j;
    if (is_case_ignorable(s[j])) continue;
    before = is_cased(s[j]);
    break;
  }
  if (!before) return false;
  for (size_t k = i + 1; k < s.size(); ++k) {
    if (is_case_ignorable(s[k])) continue;
    return !is_cased(s[k]);
  }
  return true;
}

}  // namespace

// UTF-8 itself is shared with the tokenizer (io/unicode.hpp).
void append(std::string& out, char32_t cp) { unicode::append_utf8(out, cp); }

void append_python_escape(std::string& out, char32_t cp) {
  char buf[16];
  if (cp < 0x100)
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
  else if (cp < 0x10000)
    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
  else
    std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(cp));
  out += buf;
}

std::u32string decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(unicode::next_code_point(s, i));
  return out;
}

std::string encode(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append(out, c);
  return out;
}

size_t length(const std::string& s) {
  size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

bool is_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

size_t invalid_utf8_offset(const std::string& s) {
  const size_t at = unicode::find_invalid_utf8(s);
  return at == unicode::npos ? std::string::npos : at;
}

bool is_space(char32_t c) {
  if (c < 0x80) return (c >= 9 && c <= 13) || (c >= 28 && c <= 32);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
bool is_printable(char32_t c) { return !in_ranges(kNonPrintable, c); }
bool is_alpha(char32_t c) { return in_ranges(kAlpha, c); }
bool is_decimal(char32_t c) { return in_ranges(kDecimal, c); }
bool is_digit(char32_t c) { return in_ranges(kDigit, c); }
bool is_numeric(char32_t c) { return in_ranges(kNumeric, c); }
bool is_cased(char32_t c) { return in_ranges(kCased, c); }
bool is_lower(char32_t c) { return in_ranges(kLower, c); }
bool is_upper(char32_t c) { return in_ranges(kUpper, c); }
bool is_case_ignorable(char32_t c) { return in_ranges(kCaseIgnorable, c); }

void append_upper(std::u32string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(c >= 'a' && c <= 'z' ? c - 32 : c);
    return;
  }
  map_case(kUpperMap_runs, kUpperMap_multi, out, c);
}
void append_lower(std::u32string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  map_case(kLowerMap_runs, kLowerMap_multi, out, c);
}
void append_title(std::u32string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(c >= 'a' && c <= 'z' ? c - 32 : c);
    return;
  }
  map_case(kTitleMap_runs, kTitleMap_multi, out, c);
}

std::string upper(const std::string& s) {
  if (is_ascii(s)) {
    std::string r = s;
    for (char& c : r)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    return r;
  }
  std::u32string out;
  for (char32_t c : decode(s)) append_upper(out, c);
  return encode(out);
}

std::string lower(const std::string& s) {
  if (is_ascii(s)) {
    std::string r = s;
    for (char& c : r)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return r;
  }
  const std::u32string in = decode(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == 0x3A3 && is_final_sigma(in, i))
      out.push_back(0x3C2);
    else
      append_lower(out, in[i]);
  }
  return encode(out);
}

std::string capitalize(const std::string& s) {
  const std::u32string in = decode(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == 0)
      append_title(out, in[i]);
    else if (in[i] == 0x3A3 && is_final_sigma(in, i))
      out.push_back(0x3C2);
    else
      append_lower(out, in[i]);
  }
  return encode(out);
}

std::string title(const std::string& s) {
  // A cased character following a cased one is lowered, any other is
  // title-cased (Python's str.title()).
  const std::u32string in = decode(s);
  std::u32string out;
  bool previous_cased = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char32_t c = in[i];
    if (previous_cased) {
      if (c == 0x3A3 && is_final_sigma(in, i))
        out.push_back(0x3C2);
      else
        append_lower(out, c);
    } else {
      append_title(out, c);
    }
    previous_cased = is_cased(c);
  }
  return encode(out);
}

std::string swapcase(const std::string& s) {
  const std::u32string in = decode(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) {
    const char32_t c = in[i];
    if (is_upper(c)) {
      if (c == 0x3A3 && is_final_sigma(in, i))
        out.push_back(0x3C2);
      else
        append_lower(out, c);
    } else if (is_lower(c)) {
      append_upper(out, c);
    } else {
      out.push_back(c);
    }
  }
  return encode(out);
}

}  // namespace scalpel::jinja::uni
