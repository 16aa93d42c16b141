#pragma once
// Wires the status-reporter together: Kubernetes client, pod, VMI and VMI-CRD
// informers, leader election, the work queue and its writers, the report
// endpoint, the webhook and /metrics. Only wiring: the writers' loop
// (write_worker), leader labelling (leadership), the ratio mode
// (ratio_mode, reconciler) live in gm_reporter_core; the Kubernetes
// adapters in kube_adapters and vmi_crd_watch.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace gm::reporter {

struct ControllerOptions {
  std::string kubeconfig;  // empty: in-cluster
  std::string namespace_ = "kubevirt-guest-metrics";
  std::string identity;
  std::string lease_name = "kubevirt-guest-metrics-status-reporter";
  std::string audience = "kubevirt-guest-metrics";
  std::string https_address = ":8443";
  std::string tls_cert_file = "/etc/status-reporter/tls/tls.crt";
  std::string tls_key_file = "/etc/status-reporter/tls/tls.key";
  std::string metrics_address = ":8080";
  double qps = 20;
  int burst = 40;
  int workers = 4;
  int report_max_age_seconds = 300;
  bool export_guest_load = true;
  // VEP 156's switch: false writes no ratios to pods or VMIs (reports are
  // still taken, guest load still served); ratios written before stay.
  bool write_ratios = true;
  // Injection.
  std::string sidecar_image;
  std::string sidecar_reporter_url;
  std::string sidecar_ca_file;
  int sidecar_interval_seconds = 120;
  std::string sidecar_cpu = "10m";
  std::string sidecar_memory = "24Mi";
  int sidecar_token_expiration_seconds = 3600;
  std::string sidecar_listen_address;  // empty: sidecars serve only their unix socket
  // Whether the API server has native sidecars: "auto" (by its /version,
  // read at start and every 10 min), "true" or "false" (a 1.29+ server with
  // the SidecarContainers gate off cannot be told from its version).
  std::string native_sidecars = "auto";
  // Report states: a sidecar is silent after this many of its intervals
  // without an accepted report; the webhook configuration's name (empty:
  // take injection as on since before any pod).
  int silent_intervals = 3;
  std::string webhook_configuration;
  // Leader election timing (tests shorten it).
  int lease_duration_seconds = 15;
  int renew_deadline_seconds = 10;
  int retry_period_seconds = 2;
};

class Controller {
 public:
  /// Loads the configuration and binds the listeners; throws with a message
  /// that says what is wrong (kubeconfig, TLS files, addresses).
  explicit Controller(ControllerOptions options);
  ~Controller();
  void Start();
  void Stop();
  int https_port() const;
  int http_port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gm::reporter
