// src/io/tokenizer_regex.hpp — private: Oniguruma-compatible regexes on PCRE2.
//
// Hugging Face `tokenizers` compiles Split / Replace / ByteLevel patterns with
// Oniguruma. This wrapper compiles the same pattern text with PCRE2 (8-bit,
// UTF + UCP, JIT when available) after rewriting the few escapes whose
// meaning differs between the two engines (\s, \S, \w, \W, \h, \H), and
// iterates matches the way the `onig` crate's find_iter does.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace scalpel::tok {

class Regex {
 public:
  /// Compiles `pattern` (Oniguruma syntax). Throws std::invalid_argument with
  /// PCRE2's message and offset when it does not compile.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  /// Appends the byte ranges [start, end) of the successive non-overlapping
  /// matches in `text` (valid UTF-8). An empty match right after the previous
  /// match is skipped, as the onig crate does.
  void find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

  /// Escapes `literal` so that it matches itself.
  static std::string escape(std::string_view literal);
  /// The Oniguruma -> PCRE2 rewrite (exposed for tests).
  static std::string translate(const std::string& onig_pattern);

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace scalpel::tok
