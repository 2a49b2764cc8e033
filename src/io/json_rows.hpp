// Private: the one reader of JSON / JSONL data files (atom prompt sets, pair
// datasets, benchmark rows).
#pragma once

#include <cstddef>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace scalpel::detail {

struct JsonRow {
  nlohmann::ordered_json value;
  std::string where;  ///< "path:line" (JSONL) or "path[i]" (a .json list), for error messages
};

/// The rows of a .json file (a list) or of a JSONL file (one value per line;
/// blank lines and lines starting with "//" are skipped), at most `max_rows`.
/// FileNotFound for a missing file; FormatError naming the file and line for
/// invalid JSON.
std::vector<JsonRow> read_json_rows(const std::string& path, const std::string& what,
                                    size_t max_rows = std::numeric_limits<size_t>::max());

}  // namespace scalpel::detail
