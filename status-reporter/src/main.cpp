// status-reporter: receives guest-exporter reports, records the overcommit
// ratios on launcher pods and VMIs, and exposes every VM's guest load.

#include <malloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "controller.h"
#include "gm/build_info.h"
#include "gm/cli.h"
#include "gm/logging.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

// Each flag can also come from STATUS_REPORTER_<FLAG> (upper case, '-' → '_').
template <typename T>
CLI::Option* Flag(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  return gm::AddFlag(app, "STATUS_REPORTER", name, value, help);
}

int Run(int argc, char** argv) {
  // Every thread that allocates (HTTP workers, informers, writers) would get
  // its own glibc arena, each holding freed memory; two are plenty here.
  // NOLINTNEXTLINE(concurrency-mt-unsafe): called before any thread starts.
  mallopt(M_ARENA_MAX, 2);
  gm::reporter::ControllerOptions o;
  std::string log_format = "text";
  std::string log_level = "info";
  CLI::App app{
      "status-reporter: accepts guest-exporter reports (authenticated with TokenReview), writes "
      "the CPU\n"
      "allocation and memory overcommit ratios onto launcher pods and VMIs, and serves every VM's "
      "guest\n"
      "load on /metrics. Every flag can also be set with the environment variable shown beside "
      "it."};
  app.set_version_flag("--version", std::string(gm::kVersion) + " (" + gm::kRevision + ")");
  Flag(app, "kubeconfig", o.kubeconfig,
       "kubeconfig to use outside a cluster (default: in-cluster config)")
      ->envname("KUBECONFIG");
  Flag(app, "namespace", o.namespace_, "Namespace of this Deployment (holds the leader Lease)")
      ->envname("POD_NAMESPACE");
  Flag(app, "identity", o.identity, "Leader-election identity (default: host name)")
      ->envname("POD_NAME");
  Flag(app, "lease-name", o.lease_name,
       "Name of the coordination.k8s.io Lease used for leader election");
  // Named after kube-controller-manager's flags; tests shorten them so a
  // failover takes seconds.
  Flag(app, "leader-elect-lease-duration", o.lease_duration_seconds,
       "Seconds a standby waits, after the Lease last changed, before taking it")
      ->check(CLI::Range(1, 3600));
  Flag(app, "leader-elect-renew-deadline", o.renew_deadline_seconds,
       "Seconds the leader keeps trying to renew before it stops leading (less than the lease "
       "duration)")
      ->check(CLI::Range(1, 3600));
  Flag(app, "leader-elect-retry-period", o.retry_period_seconds,
       "Seconds between attempts to acquire or renew the Lease (less than the renew deadline)")
      ->check(CLI::Range(1, 3600));
  Flag(app, "audience", o.audience, "Audience the sidecars' projected tokens must carry");
  Flag(app, "https-address", o.https_address, "host:port for reports (HTTPS)");
  Flag(app, "tls-cert-file", o.tls_cert_file, "Serving certificate (PEM)");
  Flag(app, "tls-key-file", o.tls_key_file, "Serving key (PEM)");
  Flag(app, "metrics-address", o.metrics_address,
       "host:port for /metrics, /healthz, /readyz (HTTP)");
  Flag(app, "qps", o.qps, "Client-side limit on Kubernetes API requests per second")
      ->check(CLI::Range(0.1, 10000.0));
  Flag(app, "burst", o.burst, "Burst above --qps")->check(CLI::Range(1, 100000));
  Flag(app, "workers", o.workers, "Parallel writers")->check(CLI::Range(1, 64));
  Flag(app, "report-max-age", o.report_max_age_seconds,
       "Seconds after which a report's load and ratios are no longer shown")
      ->check(CLI::Range(10, 86400));
  Flag(app, "export-guest-load", o.export_guest_load,
       "Serve kubevirt_vmi_guest_load_* (off where KubeVirt exports them)");
  Flag(app, "write-ratios", o.write_ratios,
       "Write the CPU allocation and memory overcommit ratios onto launcher pods and VMIs "
       "(VEP 156). false writes nothing to pods or VMIs; reports are still taken and guest "
       "load served; ratios written before stay until removed by hand (docs/operations.md)");
  Flag(app, "sidecar-image", o.sidecar_image,
       "Image of the guest-exporter sidecar the webhook injects");
  Flag(app, "sidecar-reporter-url", o.sidecar_reporter_url,
       "URL the injected sidecars send reports to");
  Flag(app, "sidecar-ca-file", o.sidecar_ca_file,
       "CA bundle (PEM) the sidecars trust for --sidecar-reporter-url; injected inline");
  Flag(app, "sidecar-interval", o.sidecar_interval_seconds,
       "Guest-info interval of injected sidecars, seconds")
      ->check(CLI::Range(1, 86400));
  Flag(app, "silent-intervals", o.silent_intervals,
       "A VMI whose injected sidecar had no report accepted for this many sidecar intervals is "
       "'silent' (status_reporter_vmi_report_state)")
      ->check(CLI::Range(1, 1000));
  Flag(app, "webhook-configuration", o.webhook_configuration,
       "Name of the MutatingWebhookConfiguration that injects the sidecar: absent means "
       "injection is off; pods created before it 'predate the install' (empty: not read)");
  Flag(app, "sidecar-cpu", o.sidecar_cpu,
       "CPU request (and limit, for Guaranteed pods) of the sidecar");
  Flag(app, "sidecar-memory", o.sidecar_memory, "Memory request and limit of the sidecar");
  Flag(app, "sidecar-token-expiration", o.sidecar_token_expiration_seconds,
       "Lifetime of the sidecar's projected token, seconds")
      ->check(CLI::Range(600, 86400));
  Flag(app, "sidecar-listen-address", o.sidecar_listen_address,
       "TCP address of injected sidecars' /metrics (empty: unix socket only)");
  Flag(app, "native-sidecars", o.native_sidecars,
       "Whether the API server runs native sidecars (SidecarContainers): auto (by its /version: "
       "1.29+), true, or "
       "false (1.29+ with the feature gate off); without them launcher pods are admitted unchanged")
      ->check(CLI::IsMember({"auto", "true", "false"}));
  gm::AddLogFlags(app, "STATUS_REPORTER", log_format, log_level);
  CLI11_PARSE(app, argc, argv);

  try {
    gm::SetupLogging(log_format, log_level);
    if (o.identity.empty()) {
      char host[256] = {};
      gethostname(host, sizeof host - 1);
      o.identity = host;
    }
    gm::reporter::Controller controller(o);
    if (std::signal(SIGTERM, OnSignal) == SIG_ERR || std::signal(SIGINT, OnSignal) == SIG_ERR ||
        std::signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
      throw std::runtime_error("cannot install the signal handlers");
    }
    controller.Start();
    spdlog::info("status-reporter {} ({}): reports on https port {}, metrics on http port {}",
                 gm::kVersion, gm::kRevision, controller.https_port(), controller.http_port());
    while (!g_stop) pause();
    spdlog::info("shutting down");
    controller.Stop();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "status-reporter: " << e.what() << "\n";
    return 1;
  }
}
}  // namespace

int main(int argc, char** argv) {
  // Run reports what it can; anything else escaping it must not abort with
  // a core dump instead of a message.
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "status-reporter: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "status-reporter: unexpected error\n";
  }
  return 1;
}
