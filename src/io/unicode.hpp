// src/io/unicode.hpp — private UTF-8 / Unicode helpers for the tokenizer.
//
// Everything here reproduces the behaviour of the Rust standard library (and
// of the crates Hugging Face `tokenizers` uses) closely enough that encode /
// decode give identical results: `char::is_whitespace`, `char::is_numeric`,
// `char::to_lowercase`, `String::from_utf8_lossy`, the `regex` crate's `\w`,
// and the GPT-2 byte <-> unicode table.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace scalpel::unicode {

constexpr std::size_t npos = static_cast<std::size_t>(-1);

/// Byte offset of the first byte that does not start a well-formed UTF-8
/// sequence (overlongs, surrogates and code points above U+10FFFF are
/// ill-formed), or npos when `s` is valid UTF-8.
std::size_t find_invalid_utf8(std::string_view s);

/// Length in bytes of the UTF-8 sequence starting with lead byte `b` (1 for
/// ASCII and for stray bytes, so that loops always advance).
inline std::size_t utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

/// Decodes the code point at byte offset `i` of valid UTF-8 `s` and advances
/// `i` past it.
char32_t next_code_point(std::string_view s, std::size_t& i);

/// Appends the UTF-8 encoding of `cp`.
void append_utf8(std::string& out, char32_t cp);

/// Rust's `String::from_utf8_lossy`: each maximal ill-formed subsequence
/// becomes one U+FFFD.
std::string from_utf8_lossy(std::string_view bytes);

/// Unicode White_Space (Rust `char::is_whitespace`, regex-crate `\s`).
bool is_white_space(char32_t c);
/// Rust regex-crate `\w` (Alphabetic, marks, Nd, Pc, Join_Control).
bool is_word_char(char32_t c);
/// Rust `char::is_numeric`: general categories Nd, Nl, No.
bool is_numeric(char32_t c);
/// Unicode punctuation (general categories P*) or ASCII punctuation.
bool is_punctuation(char32_t c);
/// General categories Mn, Mc, Me (combining marks).
bool is_combining_mark(char32_t c);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
/// Unicode normalization of valid UTF-8 (utf8proc).
std::string normalize(std::string_view s, NormalForm form);

/// Appends the full lowercase mapping of `c` (Rust `char::to_lowercase`).
void append_lowercase(std::string& out, char32_t c);
/// Lowercases every character of valid UTF-8 `s`.
std::string to_lowercase(std::string_view s);

/// GPT-2 byte-level alphabet: the UTF-8 text of the character standing for
/// each byte ("Ġ" for 0x20, ...).
const std::array<std::string, 256>& byte_to_unicode();
/// Inverse of byte_to_unicode(): the byte a code point stands for, or -1.
int unicode_to_byte(char32_t c);

}  // namespace scalpel::unicode
