#pragma once
// The reporter's two listeners: HTTPS for sidecar reports (and the admission
// webhook), plain HTTP for /metrics and the probes.

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "admission.h"
#include "ingestion.h"

namespace httplib {
class Server;
}

namespace gm::reporter {

class ReloadingCertificate;

struct ServersConfig {
  std::string https_host = "0.0.0.0";
  int https_port = 8443;  // 0: any free port (tests)
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string http_host = "0.0.0.0";
  int http_port = 8080;
};

struct Endpoints {
  Ingestion* ingestion = nullptr;
  std::function<std::string()> metrics;
  std::function<bool()> ready;  // caches synced
  /// POST /mutate: the body and when the webhook's lookups must end (from
  /// the API server's `timeout` parameter, see LookupBudget).
  std::function<AdmissionResult(const std::string& body, Deadline lookup_deadline)> admit;
};

class Servers {
 public:
  /// Binds both listeners; throws std::runtime_error when one cannot be bound
  /// or the TLS files cannot be loaded.
  Servers(const ServersConfig& config, Endpoints endpoints);
  ~Servers();
  void Start();
  void Stop();
  int https_port() const { return https_port_; }
  int http_port() const { return http_port_; }

 private:
  Endpoints endpoints_;
  std::unique_ptr<ReloadingCertificate> certificate_;  // outlives https_, which calls it
  std::unique_ptr<httplib::Server> https_;
  std::unique_ptr<httplib::Server> http_;
  int https_port_ = 0;
  int http_port_ = 0;
  std::thread https_thread_;
  std::thread http_thread_;
};

}  // namespace gm::reporter
