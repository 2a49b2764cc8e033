// Private: scalpel's logger. spdlog lives in src/log.cpp alone, which is
// compiled without LibTorch's include path (torch ships its own, newer {fmt},
// which Debian's spdlog cannot use). Everything else logs through these
// fmt-free functions with already-formatted strings.
#pragma once

#include <string>

namespace scalpel::detail {

enum class LogLevel { trace, debug, info, warn, error };

/// Whether a message at `level` would be shown (check before building costly strings).
bool log_enabled(LogLevel level);
void log(LogLevel level, const std::string& message);

}  // namespace scalpel::detail
