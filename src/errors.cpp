#include "scalpel/errors.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "util/messages.hpp"

namespace scalpel {
namespace detail {

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << "scalpel internal error: " << msg << " [" << expr << " failed at " << file << ":" << line
     << "] (this is a bug in scalpel; please report it with the input that triggered it)";
  throw std::logic_error(os.str());
}

std::string expected_got(std::string_view what, std::string_view expected, std::string_view got,
                         std::string_view hint) {
  std::string s;
  s.reserve(what.size() + expected.size() + got.size() + hint.size() + 32);
  s.append(what).append(": expected ").append(expected).append(", got ").append(got);
  if (!hint.empty()) s.append(" (").append(hint).append(")");
  return s;
}

static size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> nearest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       size_t max) {
  std::vector<std::pair<size_t, const std::string*>> scored;
  scored.reserve(candidates.size());
  for (const auto& c : candidates) scored.emplace_back(edit_distance(name, c), &c);
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && out.size() < max; ++i) out.push_back(*scored[i].second);
  return out;
}

std::string join_names(const std::vector<std::string>& names, bool quote, size_t max) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max; ++i) {
    if (i) s += ", ";
    if (quote) s += '"';
    s += names[i];
    if (quote) s += '"';
  }
  if (names.size() > max) s += ", ... (" + std::to_string(names.size() - max) + " more)";
  return s;
}

std::string read_text_file(const std::string& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw FileNotFound(expected_got(what, "an existing file", "no such file: " + path));
  if (S_ISDIR(st.st_mode))
    throw FormatError(expected_got(what, "a file", "a directory: " + path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(expected_got(what, "a readable file", "cannot open " + path, "check permissions"));
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace detail
}  // namespace scalpel
