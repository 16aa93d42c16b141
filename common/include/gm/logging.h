#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gm {

/// Configures the default spdlog logger to write to stderr.
/// `format` is "text" or "json" (one JSON object per line, message escaped);
/// `level` is an spdlog level name (trace, debug, info, warn, error).
/// Throws std::invalid_argument on an unknown format or level.
void SetupLogging(const std::string& format, const std::string& level);

/// Escapes `in` for use inside a JSON string literal (no surrounding quotes).
std::string JsonEscape(const std::string& in);

/// What a peer sent (a reply body, a report field, a refusal reason), made
/// safe to log: control characters, DEL, Unicode line separators and bidi
/// controls, and bytes that are not UTF-8 become visible escapes ("\\n",
/// "\\x1b", "\\u2028"), a backslash is doubled, and at most `max_bytes` of
/// `in` are kept ("...(N more bytes)" says what was cut). Valid UTF-8 text
/// stays readable.
std::string EscapeForLog(std::string_view in, size_t max_bytes = 256);

}  // namespace gm
