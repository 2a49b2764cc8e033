// src/io/jinja/lexer.hpp — splits a chat template into tokens exactly as
// jinja2's lexer does with trim_blocks=True and lstrip_blocks=True
// (transformers' settings), including the {%- -%} / {%+ +%} whitespace
// control and the removal of one trailing newline.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/jinja/ast.hpp"

namespace scalpel::jinja {

/// Maps byte offsets of the normalised source to "name:line:column" (both
/// 1-based; the column counts characters).
class SourceMap {
 public:
  SourceMap(std::string name, const std::string& source);
  std::string where(SourcePos pos) const;
  int line(SourcePos pos) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  const std::string* source_;
  std::vector<size_t> line_starts_;
};

/// jinja2 preprocessing: \r\n and \r become \n; one trailing newline is
/// dropped (keep_trailing_newline=False).
std::string normalize_source(const std::string& raw);

enum class Tok {
  Data,        // template text (whitespace control already applied)
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,
  String,      // value: unescaped text
  Int,
  Float,
  Op,          // text: the operator ("+", "//", "(", ...)
  Eof,
};

struct Token {
  Tok type = Tok::Eof;
  std::string text;   // Data/Name/String/Op payload
  int64_t ival = 0;   // Int
  double fval = 0.0;  // Float
  SourcePos pos = 0;
};

/// Describes a token for messages ("'endfor'", "end of statement block ('%}')").
std::string describe(const Token& t);

/// Tokenises normalised source. Throws FormatError (with line:column) on
/// lexical errors and Unsupported for literals scalpel cannot represent.
std::vector<Token> tokenize(const std::string& source, const SourceMap& map);

}  // namespace scalpel::jinja
