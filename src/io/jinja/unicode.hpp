// src/io/jinja/unicode.hpp — the few Unicode facilities the chat-template
// interpreter needs to behave like Python's `str`: UTF-8 <-> code points,
// Python's whitespace/printable/alpha/digit classes and full case mappings.
// The tables come from Python's unicodedata (see unicode_data.inc).
#pragma once

#include <cstddef>
#include <string>

namespace scalpel::jinja::uni {

/// Decodes UTF-8 (the input has been validated; a stray byte decodes as
/// U+FFFD so this never fails).
std::u32string decode(const std::string& s);
/// Encodes code points as UTF-8.
std::string encode(const std::u32string& s);
void append(std::string& out, char32_t cp);
/// Appends Python's escape of `cp`: \xNN, \uNNNN or \UNNNNNNNN.
void append_python_escape(std::string& out, char32_t cp);
/// Number of code points in valid UTF-8.
size_t length(const std::string& s);
/// Position of the first byte that is not well-formed UTF-8, or npos.
size_t invalid_utf8_offset(const std::string& s);
/// True when every byte is < 0x80 (byte and code point indices agree).
bool is_ascii(const std::string& s);

// Character classes, each the same as the Python str method of that name
// applied to a single character.
bool is_space(char32_t c);
bool is_printable(char32_t c);
bool is_alpha(char32_t c);
bool is_decimal(char32_t c);
bool is_digit(char32_t c);
bool is_numeric(char32_t c);
bool is_cased(char32_t c);
bool is_lower(char32_t c);
bool is_upper(char32_t c);
bool is_case_ignorable(char32_t c);

// Full case mappings (a code point may map to several: "ß".upper() == "SS").
void append_upper(std::u32string& out, char32_t c);
void append_lower(std::u32string& out, char32_t c);
void append_title(std::u32string& out, char32_t c);

// Whole-string conversions with Python's semantics.
std::string upper(const std::string& s);
std::string lower(const std::string& s);       // includes the final-sigma rule
std::string capitalize(const std::string& s);  // str.capitalize
std::string title(const std::string& s);       // str.title
std::string swapcase(const std::string& s);

}  // namespace scalpel::jinja::uni
