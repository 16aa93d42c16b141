#pragma once
// The one convention for both binaries' flags: every --some-flag can also be
// set through <PREFIX>_SOME_FLAG, and --help shows the default and the variable.
// Header-only: CLI11 is header-only, and each binary links it itself.

#include <CLI/CLI.hpp>
#include <cctype>
#include <string>

namespace gm {

/// "GUEST_EXPORTER", "reporter-url" → "GUEST_EXPORTER_REPORTER_URL".
inline std::string FlagEnvName(const std::string& prefix, const std::string& flag) {
  std::string env = prefix + "_" + flag;
  for (auto& c : env)
    c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return env;
}

template <typename T>
CLI::Option* AddFlag(CLI::App& app, const std::string& env_prefix, const std::string& name,
                     T& value, const std::string& help) {
  return app.add_option("--" + name, value, help)
      ->envname(FlagEnvName(env_prefix, name))
      ->capture_default_str();
}

/// --log-format (text, json) and --log-level, the same in both binaries
/// (gm::SetupLogging takes what they hold).
inline void AddLogFlags(CLI::App& app, const std::string& env_prefix, std::string& format,
                        std::string& level) {
  AddFlag(app, env_prefix, "log-format", format, "Log format")
      ->check(CLI::IsMember({"text", "json"}));
  AddFlag(app, env_prefix, "log-level", level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
}

}  // namespace gm
