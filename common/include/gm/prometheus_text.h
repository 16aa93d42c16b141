#pragma once
// Escaping for Prometheus' text exposition format, shared by both binaries'
// hand-written /metrics pages (docs/benchmarks.md says why they are written
// by hand). The format escapes backslash and line feed in HELP text, and the
// double quote too in label values:
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-format-details

#include <string>
#include <string_view>

namespace gm {

/// Appends `text` as a label value (without the surrounding quotes).
inline void AppendLabelValue(std::string& out, std::string_view text) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

/// Appends `text` as the text of a # HELP line.
inline void AppendHelpText(std::string& out, std::string_view text) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

}  // namespace gm
