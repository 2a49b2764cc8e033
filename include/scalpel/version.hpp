// scalpel/version.hpp
#pragma once

#define SCALPEL_VERSION_MAJOR 0
#define SCALPEL_VERSION_MINOR 1
#define SCALPEL_VERSION_PATCH 0

namespace scalpel {
/// "0.1.0"
const char* version();
}  // namespace scalpel
