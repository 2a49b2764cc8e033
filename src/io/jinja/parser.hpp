// src/io/jinja/parser.hpp — recursive-descent parser for the supported
// Jinja2 subset, following jinja2's grammar (parser.py) and its precedence:
//   cond-expr  <  or  <  and  <  not  <  comparisons (== != < <= > >= in, not in)
//   <  + -  <  ~  <  * / // %  <  **  <  unary - +  <  postfix (. [] ())
//   <  filters (|) and tests (is)
#pragma once

#include <memory>
#include <string>

#include "io/jinja/ast.hpp"
#include "io/jinja/lexer.hpp"

namespace scalpel::jinja {

/// A parsed template. `source` is the normalised text the positions refer to.
struct Template {
  std::string source;
  std::unique_ptr<SourceMap> map;
  Body body;
};

/// Parses `raw_source`. Throws FormatError ("NAME:LINE:COL: expected X, got
/// Y") on syntax errors and Unsupported on constructs outside the subset.
std::unique_ptr<Template> parse_template(const std::string& raw_source, const std::string& name);

/// Filter and test names: implemented here, known to jinja2 but not
/// implemented here (Unsupported), or unknown to jinja2 as well.
enum class Availability { Implemented, NotImplemented, Unknown };
Availability filter_availability(const std::string& name);
Availability test_availability(const std::string& name);

}  // namespace scalpel::jinja
