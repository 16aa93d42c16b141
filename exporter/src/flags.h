#pragma once
// guest-exporter's flags: parsed by CLI11 in a short-lived child process.
//
// CLI11 trims and compares with std::locale and includes <iostream>, so
// parsing in the sidecar itself would initialise libstdc++'s locales and
// standard streams, ~0.5 MiB of library pages that then stay resident for the
// sidecar's whole life, in every VM pod (docs/benchmarks.md). A forked child
// faults those pages into its own page tables only: it parses and validates,
// prints --help, --version, errors and runs `probe` exactly as before, and
// hands the parsed options to the parent as JSON over a pipe.

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

/// The options to serve with (parsed and validated), or nullopt when the
/// process is to exit with `exit_code` instead: --help, --version, `probe`,
/// a bad flag (the child has printed what to print).
std::optional<Options> ParseFlagsInChild(int argc, char** argv, int& exit_code);

}  // namespace gm::exporter
