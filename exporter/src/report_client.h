#pragma once
// Pushes the sidecar's report to the status-reporter: every interval, and at
// once when what it says changes. Runs on its own thread, so a slow or absent
// reporter never delays polling or scrapes.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "exposition.h"
#include "gm/ratios.h"
#include "gm/report.h"
#include "https_client.h"
#include "load_cache.h"

namespace gm::exporter {

/// The launcher pod the sidecar runs in (from the Downward API).
struct PodRef {
  std::string name;
  std::string uid;
};

/// The report for one domain, pure. `now` gives the sample's age.
Report BuildReport(const DomainView& d, const std::string& node, const PodRef& pod,
                   const RatioInputs& requests, std::chrono::system_clock::time_point now);

/// True when two reports say different things (the load sample's age aside).
bool ReportChanged(const Report& a, const Report& b);

struct SendResult {
  bool ok = false;
  std::string error;  // what went wrong, for the log
  /// Its class, for the next report's health (gm::ReportHealth::last_error):
  /// unreachable, token_unreadable, http_<code>; empty reads as unreachable.
  std::string error_class{};
};

/// Where reports go. The real one is HTTPS; unit tests use an in-memory one.
class ReportSender {
 public:
  virtual ~ReportSender() = default;
  virtual SendResult Send(const std::string& body) = 0;
};

struct HttpsTarget {
  std::string url;         // https://status-reporter.ns.svc:8443/v1/reports
  std::string ca_file;     // CA of the reporter's serving certificate ("" = system CAs)
  std::string ca_pem;      // the same inline (the injector passes it by env); wins over ca_file
  std::string token_file;  // projected, audience-bound service-account token
  std::chrono::milliseconds timeout{5000};
};

/// POSTs each report over HTTPS with the bearer token. The token is read
/// from its file at every send: projected tokens are rotated by the kubelet.
class HttpsReportSender final : public ReportSender {
 public:
  /// The real sender: libcurl (GnuTLS build), trusting target.ca_pem / ca_file / the system.
  explicit HttpsReportSender(const HttpsTarget& target);
  /// With another transport (unit tests).
  HttpsReportSender(HttpsTarget target, std::unique_ptr<HttpTransport> transport);
  SendResult Send(const std::string& body) override;

 private:
  HttpsTarget target_;
  std::unique_ptr<HttpTransport> transport_;
};

struct ReportLoopConfig {
  std::string node;
  PodRef pod;
  RatioInputs requests;
  std::chrono::seconds interval{120};
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{60000};
  /// The factor a retry's backoff is multiplied by, in [0.5, 1], so that the
  /// sidecars of a node retry apart after a reporter outage; empty = random.
  std::function<double()> jitter{};
};

class ReportLoop {
 public:
  ReportLoop(ReportLoopConfig config, ReportSender& sender, const LoadCache& cache,
             SelfMetrics& metrics);
  ~ReportLoop();
  void Start();
  void Stop();
  /// Something may have changed (a poll finished, a domain came or went).
  void Notify();
  /// One pass, for tests: sends what is due at `now`; returns the next due time.
  std::chrono::steady_clock::time_point RunOnce(std::chrono::steady_clock::time_point now);

 private:
  struct PerDomain {
    std::optional<Report> last_sent;
    std::chrono::steady_clock::time_point last_sent_at{};
    std::chrono::steady_clock::time_point retry_at{};
    std::chrono::milliseconds backoff{0};
    int failures = 0;        // in the current burst: only the first is logged as a warning
    std::string last_error;  // class of the burst's last failure, told in the next report
  };
  void Loop();
  double Jitter();

  const ReportLoopConfig config_;
  // The report order (gm::ReportOrder): this process's start on the wall
  // clock, and the number of the last report it tried to send.
  const uint64_t start_ms_;
  uint64_t sequence_ = 0;
  ReportSender& sender_;
  const LoadCache& cache_;
  SelfMetrics& metrics_;
  std::map<std::string, PerDomain> domains_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;
  bool stop_ = false;
};

}  // namespace gm::exporter
