#include "scalpel/version.hpp"

namespace scalpel {
const char* version() { return "0.1.0"; }
}  // namespace scalpel
