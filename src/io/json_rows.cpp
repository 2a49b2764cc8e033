// The JSON / JSONL row reader (io/json_rows.hpp).
#include "io/json_rows.hpp"

#include <filesystem>
#include <sstream>

#include "scalpel/errors.hpp"
#include "util/messages.hpp"

namespace scalpel::detail {

using Json = nlohmann::ordered_json;

std::vector<JsonRow> read_json_rows(const std::string& path, const std::string& what, size_t max_rows) {
  const std::string text = read_text_file(path, what);
  std::vector<JsonRow> rows;
  if (std::filesystem::path(path).extension() == ".json") {
    Json list;
    try {
      list = Json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(expected_got(path, "a JSON list", std::string("invalid JSON (") + e.what() + ")"));
    }
    if (!list.is_array()) throw FormatError(expected_got(path, "a JSON list", list.type_name()));
    for (size_t i = 0; i < list.size() && rows.size() < max_rows; ++i)
      rows.push_back({list[i], path + "[" + std::to_string(i) + "]"});
    return rows;
  }
  std::istringstream in(text);
  size_t line_no = 0;
  for (std::string line; rows.size() < max_rows && std::getline(in, line);) {
    ++line_no;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line.compare(first, 2, "//") == 0) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    try {
      rows.push_back({Json::parse(line), where});
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(expected_got(where, "one JSON value per line", std::string("invalid JSON (") + e.what() + ")"));
    }
  }
  return rows;
}

}  // namespace scalpel::detail
