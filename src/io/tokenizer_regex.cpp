// src/io/tokenizer_regex.cpp — see tokenizer_regex.hpp.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "io/tokenizer_regex.hpp"

#include <pcre2.h>

#include <stdexcept>

#include "io/unicode.hpp"
#include "scalpel/errors.hpp"

namespace scalpel::tok {

namespace {

// Oniguruma's Unicode \s: U+0009..U+000D, U+0085 and the Z categories. PCRE2's
// UCP \s also matches U+180E, so both are spelled out explicitly.
constexpr const char* kSpaceSet = "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}";
// Oniguruma's Unicode \w: Alphabetic, marks, decimal numbers, connector
// punctuation; outside a class it also takes the Latin-1 numbers ² ³ ¹ ¼ ½ ¾
// (its ISO-8859-1 ctype table), inside a class it does not.
constexpr const char* kWordSet = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}";
constexpr const char* kWordSetInClass = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}";
// Oniguruma's \h is a hexadecimal digit (PCRE2: horizontal space).
constexpr const char* kHexSet = "0-9a-fA-F";

/// Per-thread PCRE2 match context with a JIT stack large enough for long
/// whitespace runs; PCRE2 falls back to the interpreter if JIT is missing.
struct ThreadMatchState {
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  ThreadMatchState() {
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (context != nullptr && jit_stack != nullptr) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    if (jit_stack != nullptr) pcre2_jit_stack_free(jit_stack);
    if (context != nullptr) pcre2_match_context_free(context);
  }
  ThreadMatchState(const ThreadMatchState&) = delete;
  ThreadMatchState& operator=(const ThreadMatchState&) = delete;
};

ThreadMatchState& thread_state() {
  thread_local ThreadMatchState state;
  return state;
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() {
    if (code != nullptr) pcre2_code_free(code);
  }
};

std::string Regex::translate(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 16);
  int class_depth = 0;  // > 0 inside [...] (POSIX [:name:] nests)
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      const bool in_class = class_depth > 0;
      const char* set = nullptr;
      bool negated = false;
      switch (e) {
        case 's': set = kSpaceSet; break;
        case 'S': set = kSpaceSet; negated = true; break;
        case 'w': set = in_class ? kWordSetInClass : kWordSet; break;
        case 'W': set = kWordSet; negated = true; break;
        case 'h': set = kHexSet; break;
        case 'H': set = kHexSet; negated = true; break;
        case 'v': set = "\\x{0B}"; break;  // Oniguruma: vertical tab only
        default: break;
      }
      if (set != nullptr && !(in_class && negated)) {
        if (in_class) {
          out += set;
        } else {
          out += negated ? "[^" : "[";
          out += set;
          out += "]";
        }
      } else {
        // Any other escape (or a negated set inside a class, which PCRE2 can
        // only express with its own meaning) is kept verbatim.
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (c == '(' && class_depth == 0 && i + 2 < p.size() && p[i + 1] == '?') {
      // Inline options "(?imx-imx)" / "(?imx-imx:...)": Ruby's m is dot-all (PCRE2 s).
      std::size_t k = i + 2;
      std::string options;
      while (k < p.size() && (p[k] == 'i' || p[k] == 'm' || p[k] == 'x' || p[k] == '-')) {
        options += p[k] == 'm' ? 's' : p[k];
        ++k;
      }
      if (!options.empty() && k < p.size() && (p[k] == ':' || p[k] == ')')) {
        out += "(?" + options;
        i = k - 1;
        continue;
      }
    }
    if (c == '[' && class_depth > 0 && p.compare(i, 2, "[:") == 0) {
      // POSIX bracket classes whose Unicode meaning differs in PCRE2.
      static const std::pair<const char*, const char*> kPosix[] = {
          {"[:alpha:]", "\\p{Alphabetic}"},          {"[:^alpha:]", "\\P{Alphabetic}"},
          {"[:punct:]", "\\p{P}\\p{S}"},            {"[:alnum:]", "\\p{Alphabetic}\\p{Nd}"},
          {"[:word:]", kWordSetInClass},             {"[:space:]", kSpaceSet},
          {"[:upper:]", "\\p{Uppercase}"},           {"[:lower:]", "\\p{Lowercase}"}};
      bool replaced = false;
      for (const auto& [name, set] : kPosix) {
        const std::size_t len = std::char_traits<char>::length(name);
        if (p.compare(i, len, name) == 0) {
          out += set;
          i += len - 1;
          replaced = true;
          break;
        }
      }
      if (replaced) continue;
    }
    if (c == '[') {
      if (class_depth > 0 && i + 1 < p.size() && p[i + 1] == ':') {
        ++class_depth;  // POSIX bracket expression inside a class
      } else if (class_depth == 0) {
        class_depth = 1;
        out += c;
        // A ']' right after '[' or '[^' is a literal member.
        if (i + 1 < p.size() && p[i + 1] == '^') {
          out += '^';
          ++i;
        }
        if (i + 1 < p.size() && p[i + 1] == ']') {
          out += ']';
          ++i;
        }
        continue;
      } else {
        ++class_depth;  // Oniguruma nested class
      }
    } else if (c == ']' && class_depth > 0) {
      --class_depth;
    }
    out += c;
  }
  return out;
}

std::string Regex::escape(std::string_view literal) {
  std::string out;
  out.reserve(literal.size() * 2);
  for (char c : literal) {
    switch (c) {
      case '\\': case '^': case '$': case '.': case '|': case '?': case '*': case '+':
      case '(': case ')': case '[': case ']': case '{': case '}': case '-': case '#':
      case ' ': case '\t': case '\n': case '\r': case '\f': case '\v':
        out += '\\';
        if (c == '\t') { out += 't'; continue; }
        if (c == '\n') { out += 'n'; continue; }
        if (c == '\r') { out += 'r'; continue; }
        if (c == '\f') { out += 'f'; continue; }
        if (c == '\v') { out += "x{0B}"; continue; }
        out += c;
        break;
      case '\0':
        out += "\\x{00}";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  const std::string translated = translate(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // Oniguruma (Ruby syntax): ^ and $ match at line breaks, '.' stops at \n only.
  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  if (context != nullptr) pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error_code, &error_offset, context);
  if (context != nullptr) pcre2_compile_context_free(context);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error_code, buffer, sizeof(buffer));
    throw std::invalid_argument("regex /" + pattern + "/ does not compile: " +
                                std::string(reinterpret_cast<const char*>(buffer)) + " at offset " +
                                std::to_string(error_offset));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(pcre2_match_data_create_from_pattern(impl_->code, nullptr));
  if (!md) throw std::bad_alloc();
  ThreadMatchState& state = thread_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const std::size_t n = text.size();
  std::size_t pos = 0;
  std::size_t last_match_end = static_cast<std::size_t>(-1);
  while (pos <= n) {
    int rc = 0;
    if (impl_->jit) {
      rc = pcre2_jit_match(impl_->code, subject, n, pos, PCRE2_NO_UTF_CHECK, md.get(), state.context);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        rc = pcre2_match(impl_->code, subject, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md.get(), state.context);
      }
    } else {
      rc = pcre2_match(impl_->code, subject, n, pos, PCRE2_NO_UTF_CHECK, md.get(), state.context);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buffer[256];
      pcre2_get_error_message(rc, buffer, sizeof(buffer));
      throw Unsupported("tokenizer regex /" + pattern_ + "/: expected a successful match, got PCRE2 error \"" +
                        std::string(reinterpret_cast<const char*>(buffer)) + "\" (input too large for the pattern?)");
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const std::size_t start = ov[0];
    const std::size_t end = ov[1];
    if (start == end && start == last_match_end) {
      // Empty match adjacent to the previous one: step over one character.
      if (start >= n) break;
      pos = start + unicode::utf8_len(static_cast<unsigned char>(text[start]));
      continue;
    }
    out.emplace_back(start, end);
    last_match_end = end;
    if (end == start) {
      if (start >= n) break;
      pos = start + unicode::utf8_len(static_cast<unsigned char>(text[start]));
    } else {
      pos = end;
    }
  }
}

}  // namespace scalpel::tok
