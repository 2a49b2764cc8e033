// Private: helpers that build error messages in scalpel's one style,
//   "<what>: expected <X>, got <Y> (<hint>)".
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace scalpel::detail {

std::string expected_got(std::string_view what, std::string_view expected, std::string_view got,
                         std::string_view hint = {});

/// Up to `max` candidates closest to `name` by edit distance (for "did you
/// mean" hints on unknown names).
std::vector<std::string> nearest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       size_t max = 5);

/// "a, b, c" (with quotes when `quote`).
std::string join_names(const std::vector<std::string>& names, bool quote = true, size_t max = 12);

/// Reads a whole file; FileNotFound if missing, FormatError if unreadable.
std::string read_text_file(const std::string& path, std::string_view what);

}  // namespace scalpel::detail
