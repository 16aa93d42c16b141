#include "gm/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace gm {

std::string JsonEscape(const std::string& in) {
  std::string out;
  out.reserve(in.size() + 8);
  for (const char c : in) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          static_cast<void>(std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

namespace {

void AppendHexByte(std::string& out, unsigned char c) {
  char buf[8];
  static_cast<void>(std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c)));
  out += buf;
}

// Length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629:
// shortest form, no surrogates, at most U+10FFFF) and its code point; 0 when
// the first byte does not start one.
size_t Utf8Sequence(std::string_view s, char32_t& cp) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  size_t n = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0Fu;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; ++i) {
    if (!cont(i)) return 0;
    cp = (cp << 6) | (b(i) & 0x3Fu);
  }
  const char32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// Code points that end, reorder or hide text on a terminal or in a log viewer:
// C1 controls (NEL among them), bidi marks and overrides, line and paragraph
// separators.
bool IsUnsafeCodePoint(char32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// spdlog's %v inserts the message verbatim; JSON logs need it escaped.
class EscapedMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string escaped = JsonEscape(std::string(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessageFlag>();
  }
};

}  // namespace

void SetupLogging(const std::string& format, const std::string& level) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    throw std::invalid_argument("unknown log level '" + level +
                                "' (want trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::stderr_logger_mt("gm");
  if (format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<EscapedMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":"%*"})");
    logger->set_formatter(std::move(formatter));
  } else if (format == "text") {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  } else {
    throw std::invalid_argument("unknown log format '" + format + "' (want text or json)");
  }
  logger->set_level(lvl);
  spdlog::set_default_logger(std::move(logger));
}

std::string EscapeForLog(std::string_view in, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(in.size(), max_bytes) + 16);
  size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c >= 0x20 && c < 0x7F) {
      if (i + 1 > max_bytes) break;
      if (c == '\\') out += '\\';
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    char32_t cp = 0;
    const size_t n = c >= 0x80 ? Utf8Sequence(in.substr(i), cp) : 0;
    if (i + std::max<size_t>(n, 1) > max_bytes) break;  // never split a character
    if (n == 0) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else {
        AppendHexByte(out, c);  // other controls, DEL, bytes that are not UTF-8
      }
      ++i;
    } else if (IsUnsafeCodePoint(cp)) {
      char buf[16];
      static_cast<void>(std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp)));
      out += buf;
      i += n;
    } else {
      out.append(in.substr(i, n));
      i += n;
    }
  }
  if (i < in.size()) out += "...(" + std::to_string(in.size() - i) + " more bytes)";
  return out;
}

}  // namespace gm
