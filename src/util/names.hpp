// Private: the layer index in hook and tensor names.
#pragma once

#include <cstdint>
#include <string>

namespace scalpel::detail {

/// "{prefix}{l}.…" → l (e.g. prefix "blocks." for hook points, "model.layers."
/// for weights); -1 when the name does not start with prefix, digits and a dot.
inline int64_t layer_index(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return -1;
  int64_t l = 0;
  size_t i = prefix.size();
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && l < (int64_t{1} << 40); ++i) l = l * 10 + (name[i] - '0');
  return i > prefix.size() && i < name.size() && name[i] == '.' ? l : -1;
}

}  // namespace scalpel::detail
