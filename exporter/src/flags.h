#pragma once
// guest-exporter's flags, parsed by CLI11 in a separate, short-lived program.
//
// CLI11 trims and compares with std::locale and includes <iostream>, whose
// static initialiser builds libstdc++'s standard streams and locales in every
// program that links it: ~0.5 MiB of library pages that would stay resident
// for the sidecar's whole life, in every VM pod (docs/benchmarks.md). So the
// sidecar links no CLI11: at start it runs guest-exporter-flags (installed
// beside it) with its own arguments and environment. That program prints
// --help, --version and errors, runs `probe`, and otherwise hands the parsed,
// checked options back as JSON on descriptor 3.

#include <optional>
#include <string>

namespace gm::exporter {

struct Options {
  std::string libvirt_uri = "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock";
  int interval = 120;
  double max_age_factor = 2.5;
  int agent_timeout = 5;
  std::string vmi_namespace;
  std::string vmi_name;
  std::string node;
  std::string socket = "/var/run/guest-exporter/metrics.sock";
  std::string listen_address = ":9477";
  int http_request_timeout = 10;
  int http_idle_timeout = 60;
  size_t http_max_tcp_connections = 512;
  size_t http_max_unix_connections = 32;
  std::string log_format = "text";
  std::string log_level = "info";
  int max_backoff = 30;
  int keepalive_interval = 30;
  unsigned keepalive_count = 3;
  int call_deadline = 30;
  int watchdog_timeout = 0;  // 0: derived from the keepalive and agent timeouts
  // Launcher pod and ratio inputs (the injector sets them).
  std::string pod_name;
  std::string pod_uid;
  std::string cpu_request;
  std::string memory_request;
  std::string memory_overhead;
  std::string vmi_memory_request;
  std::string cluster_memory_overcommit;
  // Reporting to the status-reporter.
  std::string reporter_url;
  std::string reporter_ca_file;
  std::string reporter_ca_pem;
  std::string token_file = "/var/run/secrets/guest-metrics/token";
};

/// The options to serve with, from guest-exporter-flags beside this program;
/// nullopt when the process is to exit with `exit_code` instead: --help,
/// --version, `probe`, a bad flag (the parser has printed what to print), or
/// no parser to run (said on stderr).
std::optional<Options> ParseFlags(int argc, char** argv, int& exit_code);

/// guest-exporter-flags' whole work: parses and checks argv (and the
/// GUEST_EXPORTER_* environment); writes the options to `out_fd` and returns
/// 0, or returns the exit code after --help, --version, `probe` or an error.
int RunFlagParser(int argc, char** argv, int out_fd);

/// The hand-over between the two programs.
std::string EncodeOptions(const Options& o);
std::optional<Options> DecodeOptions(const std::string& text, std::string& error);

/// The descriptor guest-exporter-flags writes the options to.
inline constexpr int kOptionsFd = 3;

}  // namespace gm::exporter
