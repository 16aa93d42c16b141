#pragma once
// The reporter's two listeners: HTTPS for sidecar reports (and the admission
// webhook), plain HTTP for /metrics and the probes. Boost.Beast on a few
// Asio I/O threads: TLS handshakes, header and body reads and writes are
// asynchronous, each with its deadline, so a slow or silent peer holds a
// connection slot and nothing else. Only the handlers that may wait on the
// API server (TokenReview, the webhook's lookups) and /metrics rendering run
// on bounded worker pools; when one is full the request gets 503 at once.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "admission.h"
#include "gm/listen_address.h"
#include "metrics.h"
#include "report_intake.h"

namespace gm::reporter {

/// The limits of both listeners. The defaults are the production values;
/// the integration tests (status-reporter/tests/integration/listeners_test.py)
/// rely on request_timeout and the body limits.
struct ServerLimits {
  /// A TLS handshake that has not finished by then is dropped.
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(5)};
  /// The whole request, headers and body, from its first byte (for a new
  /// connection: from the accept or the end of the handshake). Not reset per
  /// byte: a client sending a byte a second is cut off here.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
  /// A kept-alive connection waiting for its next request.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(30)};
  /// Writing one answer.
  std::chrono::milliseconds write_timeout{std::chrono::seconds(10)};
  /// Open connections per listener; a connection beyond is closed at accept.
  /// Separate budgets: silent connections on HTTPS cannot take the probes'
  /// slots on the metrics port, and the other way round.
  size_t https_connections = 1024;
  size_t http_connections = 128;
  /// Request line and header fields together.
  size_t header_limit = size_t{16} * 1024;
  /// Asio threads: I/O, TLS handshakes, /healthz and /readyz.
  int io_threads = 2;
  /// Workers and queued requests per pool; a request arriving at a full
  /// queue is answered 503 at once. Reports and webhook calls have their
  /// own pools: slow TokenReviews must not make the API server's webhook
  /// call time out (it fails open and the pod starts without the sidecar).
  int report_workers = 8;
  size_t report_queue = 64;
  int admission_workers = 4;
  size_t admission_queue = 32;
  int metrics_workers = 1;
  size_t metrics_queue = 8;
};

struct ServersConfig {
  ListenAddress https{"", 8443};  // port 0: any free port (tests); host "": dual-stack wildcard
  std::string tls_cert_file;
  std::string tls_key_file;
  ListenAddress http{"", 8080};
  ServerLimits limits;
};

struct Endpoints {
  Ingestion* ingestion = nullptr;
  std::function<std::string()> metrics;
  std::function<bool()> ready;  // caches synced; cheap, called on an I/O thread
  /// POST /mutate: the body and when the webhook's lookups must end (from
  /// the API server's `timeout` parameter, see LookupBudget).
  std::function<AdmissionResult(const std::string& body, Deadline lookup_deadline)> admit;
  /// Where the listeners count what they refused or cut (connections over
  /// budget, failed handshakes, request deadlines, 413s, full pools); none
  /// when null.
  ReporterMetrics* counters = nullptr;
};

class Servers {
 public:
  /// Binds both listeners; throws std::runtime_error when one cannot be bound
  /// or the TLS files cannot be loaded.
  Servers(const ServersConfig& config, Endpoints endpoints);
  ~Servers();
  Servers(const Servers&) = delete;
  Servers& operator=(const Servers&) = delete;
  void Start();
  /// Stops accepting, lets the running handlers finish, drops the rest.
  void Stop();
  int https_port() const;
  int http_port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// The value of query parameter `name` in a request target ("/p?a=1&b=2"),
/// percent-decoded; "" when absent.
std::string QueryParameter(const std::string& target, const std::string& name);

}  // namespace gm::reporter
