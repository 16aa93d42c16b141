#pragma once

#include <string>

namespace gm {

/// Configures the default spdlog logger to write to stderr.
/// `format` is "text" or "json" (one JSON object per line, message escaped);
/// `level` is an spdlog level name (trace, debug, info, warn, error).
/// Throws std::invalid_argument on an unknown format or level.
void SetupLogging(const std::string& format, const std::string& level);

/// Escapes `in` for use inside a JSON string literal (no surrounding quotes).
std::string JsonEscape(const std::string& in);

}  // namespace gm
