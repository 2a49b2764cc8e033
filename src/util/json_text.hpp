// Private: JSON text of results whose numbers may be non-finite (a condition
// number of a rank-deficient matrix, a refusal score of p = 1). nlohmann
// writes inf and NaN as null; these are written as Infinity, -Infinity and NaN,
// as Python's json module writes and reads them.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

namespace scalpel::detail {

inline std::string json_text(nlohmann::ordered_json j, int indent = -1) {
  struct Walk {
    static void run(nlohmann::ordered_json& x) {
      if (x.is_number_float()) {
        const double d = x.get<double>();
        if (!std::isfinite(d)) x = std::isnan(d) ? "\x01NaN" : d > 0 ? "\x01Infinity" : "\x01-Infinity";
      } else if (x.is_structured()) {
        for (auto& e : x) run(e);
      }
    }
  };
  Walk::run(j);
  std::string s = j.dump(indent);
  for (const char* word : {"NaN", "Infinity", "-Infinity"}) {
    const std::string quoted = std::string("\"\\u0001") + word + "\"";
    for (size_t at = s.find(quoted); at != std::string::npos; at = s.find(quoted, at)) s.replace(at, quoted.size(), word);
  }
  return s;
}

}  // namespace scalpel::detail
