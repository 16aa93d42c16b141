#include "flags.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <iostream>

#include "gm/build_info.h"
#include "gm/cli.h"
#include "gm/errno_text.h"
#include "gm/quantity.h"
#include "gm/unique_fd.h"
#include "http_server.h"
#include "https_client.h"
#include "https_wire.h"

namespace gm::exporter {

namespace {

// Each flag can also come from GUEST_EXPORTER_<FLAG> (upper case, '-' → '_').
template <typename T>
CLI::Option* Flag(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  return gm::AddFlag(app, "GUEST_EXPORTER", name, value, help);
}

// An optional quantity flag: empty means not given; anything else must parse.
void CheckQuantity(const std::string& flag, const std::string& text) {
  if (text.empty()) return;
  std::string error;
  if (!gm::ParseQuantity(text, error)) throw CLI::ValidationError("--" + flag, error);
}

// What no single flag's check can see: combinations and contents.
void Validate(const Options& o) {
  if (o.vmi_namespace.empty() != o.vmi_name.empty()) {
    throw CLI::ValidationError("--vmi-namespace and --vmi-name", "give both or neither");
  }
  CheckQuantity("cpu-request", o.cpu_request);
  CheckQuantity("memory-request", o.memory_request);
  CheckQuantity("memory-overhead", o.memory_overhead);
  CheckQuantity("vmi-memory-request", o.vmi_memory_request);
  CheckQuantity("cluster-memory-overcommit", o.cluster_memory_overcommit);
  if (!o.reporter_url.empty() && (o.pod_name.empty() || o.pod_uid.empty() || o.vmi_name.empty())) {
    throw CLI::ValidationError(
        "--reporter-url", "reports need --pod-name, --pod-uid, --vmi-namespace and --vmi-name");
  }
  if (!o.reporter_url.empty()) {
    std::string error;
    if (!ParseHttpsUrl(o.reporter_url, error)) throw CLI::ValidationError("--reporter-url", error);
    if (!o.reporter_ca_pem.empty() && !CountPemCertificates(o.reporter_ca_pem, error)) {
      throw CLI::ValidationError("--reporter-ca-pem", "no usable CA certificate: " + error);
    }
  }
}

}  // namespace

int RunFlagParser(int argc, char** argv, int out_fd) {
  try {
    Options o;
    CLI::App app{
        "guest-exporter: reads each VM's guest load average (1m/5m/15m) through the pod's own "
        "libvirt\n"
        "and serves it as Prometheus gauges on a unix socket and, optionally, on TCP.\n"
        "Every flag can also be set with the environment variable shown beside it."};
    app.set_version_flag("--version", std::string(gm::kVersion) + " (" + gm::kRevision + ")");
    Flag(app, "libvirt-uri", o.libvirt_uri,
         "libvirt connection URI (non-root launcher default; root launchers use qemu:///system)");
    Flag(app, "guest-info-interval", o.interval, "Seconds between load reads of each domain")
        ->check(CLI::Range(1, 86400));
    Flag(app, "max-sample-age", o.max_age_factor,
         "A sample older than this many intervals is dropped")
        ->check(CLI::Range(1.0, 100.0));
    Flag(app, "agent-timeout", o.agent_timeout,
         "Seconds the guest agent gets to answer guest-get-load")
        ->check(CLI::Range(1, 300));
    Flag(app, "vmi-namespace", o.vmi_namespace,
         "Namespace of the VMI (default: from the domain name <ns>_<name>)");
    Flag(app, "vmi-name", o.vmi_name,
         "Name of the VMI (default: from the domain name <ns>_<name>)");
    Flag(app, "node-name", o.node, "Node label value (default: the host name)");
    Flag(app, "socket", o.socket, "Unix socket serving /metrics, /healthz, /readyz (always on)");
    Flag(app, "listen-address", o.listen_address,
         "TCP address for the same endpoints, host:port ([v6]:port; :port is every interface, "
         "dual-stack); empty "
         "turns TCP off");
    Flag(app, "http-request-timeout", o.http_request_timeout,
         "Seconds a client has for a whole request, from its first byte until its response is sent")
        ->check(CLI::Range(1, 600));
    Flag(app, "http-idle-timeout", o.http_idle_timeout,
         "Seconds an idle keep-alive connection stays open")
        ->check(CLI::Range(1, 3600));
    Flag(app, "http-max-tcp-connections", o.http_max_tcp_connections,
         "Open TCP connections at most; more are refused")
        ->check(CLI::Range(1, 65536));
    Flag(app, "http-max-unix-connections", o.http_max_unix_connections,
         "Open unix-socket connections at most, a budget TCP clients cannot use")
        ->check(CLI::Range(1, 65536));
    gm::AddLogFlags(app, "GUEST_EXPORTER", o.log_format, o.log_level);
    // The spellings of Prometheus' own exporters, as aliases (CLI11 accepts dots in names).
    app.add_option("--web.listen-address", o.listen_address, "Alias of --listen-address");
    app.add_option("--log.level", o.log_level, "Alias of --log-level")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
    app.add_option("--log.format", o.log_format, "Alias of --log-format (logfmt is read as text)")
        ->transform(CLI::Transformer({{"logfmt", "text"}}))
        ->check(CLI::IsMember({"text", "json"}));
    Flag(app, "reconnect-max-backoff", o.max_backoff,
         "Upper bound, in seconds, between reconnect attempts")
        ->check(CLI::Range(1, 3600));
    Flag(app, "keepalive-interval", o.keepalive_interval,
         "Seconds of silence from libvirt before a keepalive probe; a frozen daemon is detected "
         "after "
         "interval x (count + 1) s (default 30 x 4 = 120 s). The daemon's own pings (every 5 s by "
         "default) keep a live connection from ever needing ours")
        ->check(CLI::Range(1, 600));
    Flag(app, "keepalive-count", o.keepalive_count,
         "Unanswered keepalive probes before the connection is dropped")
        ->check(CLI::Range(1, 100));
    Flag(app, "call-deadline", o.call_deadline, "Seconds after which a libvirt call counts as hung")
        ->check(CLI::Range(1, 3600));
    Flag(app, "watchdog-timeout", o.watchdog_timeout,
         "Seconds one libvirt call may run before the process exits (non-zero) to be restarted; 0: "
         "twice the longest "
         "a call can legitimately take, max(keepalive-interval x (keepalive-count + 1), "
         "agent-timeout + 30) (240 s by "
         "default). The serving thread's bound is the smaller of this and 60 s")
        ->check(CLI::Range(0, 86400));

    Flag(app, "pod-name", o.pod_name,
         "Name of the launcher pod this sidecar runs in (Downward API)");
    Flag(app, "pod-uid", o.pod_uid, "UID of the launcher pod (Downward API)");
    Flag(app, "cpu-request", o.cpu_request,
         "Cores of the compute container's CPU request that belong to the guest's vCPUs, "
         "a quantity such as 200m (the webhook derives it per VM shape; on a plain host, the "
         "request)");
    Flag(app, "memory-request", o.memory_request,
         "Memory request of the compute container, a quantity such as 2Gi");
    Flag(app, "memory-overhead", o.memory_overhead,
         "Virtualization overhead (pod annotation kubevirt.io/memory-overhead-bytes)");
    Flag(
        app, "vmi-memory-request", o.vmi_memory_request,
        "The guest's memory request without virtualization overhead (the webhook derives it per VM "
        "shape: the VMI's request, hugepages, or guest x 100 / memoryOvercommit)");
    Flag(app, "cluster-memory-overcommit", o.cluster_memory_overcommit,
         "The cluster's memoryOvercommit percentage");
    Flag(app, "reporter-url", o.reporter_url,
         "status-reporter URL to push reports to (empty: no reports)");
    Flag(app, "reporter-ca-file", o.reporter_ca_file, "CA certificate of the status-reporter");
    Flag(app, "reporter-ca-pem", o.reporter_ca_pem,
         "The same CA as PEM text (the injector sets it); wins over --reporter-ca-file");
    Flag(app, "token-file", o.token_file,
         "Projected service-account token sent with each report (re-read every time)");

    std::string probe_socket = o.socket;
    std::string probe_path = "/readyz";
    int probe_timeout_ms = 2000;
    auto* probe = app.add_subcommand(
        "probe",
        "Exit 0 when the running exporter answers 200 on its unix socket (for exec probes)");
    probe->add_option("--socket", probe_socket, "Unix socket of the running exporter")
        ->envname("GUEST_EXPORTER_SOCKET")
        ->capture_default_str();
    probe->add_option("--path", probe_path, "Path to ask for")->capture_default_str();
    probe->add_option("--timeout-ms", probe_timeout_ms, "Give up after this many milliseconds")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    if (*probe) {
      std::string body, error;
      const int status = HttpGetUnix(probe_socket, probe_path,
                                     std::chrono::milliseconds(probe_timeout_ms), body, error);
      if (status == 200) return 0;
      std::cerr << "probe " << probe_path << " on " << probe_socket << ": "
                << (status < 0 ? error : "HTTP " + std::to_string(status)) << "\n";
      return 1;
    }
    try {
      Validate(o);
    } catch (const CLI::Error& e) {
      return app.exit(e);
    }
    const std::string text = EncodeOptions(o);
    for (size_t off = 0; off < text.size();) {
      const ssize_t n = ::write(out_fd, text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        std::cerr << "guest-exporter: cannot hand the flags over (fd " << out_fd
                  << "; this program is started by guest-exporter): " << gm::ErrnoText(errno)
                  << "\n";
        return 1;
      }
      off += static_cast<size_t>(n);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "guest-exporter: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace gm::exporter
