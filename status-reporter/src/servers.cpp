#include "servers.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "gm/report.h"

namespace gm::reporter {

namespace {

int Bind(httplib::Server& s, const std::string& host, int port, const char* what) {
  const int bound = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) throw std::runtime_error(std::string("cannot listen for ") + what + " on " + host + ":" + std::to_string(port));
  return bound;
}

void Limit(httplib::Server& s) {
  // Small bodies, short reads: a slow client cannot hold a worker for long.
  s.set_payload_max_length(kMaxReportBytes);
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  s.new_task_queue = [] { return new httplib::ThreadPool(4); };
}

}  // namespace

Servers::Servers(const ServersConfig& config, Endpoints endpoints) : endpoints_(std::move(endpoints)) {
  auto https = std::make_unique<httplib::SSLServer>(config.tls_cert_file.c_str(), config.tls_key_file.c_str());
  if (!https->is_valid()) {
    throw std::runtime_error("cannot load TLS certificate '" + config.tls_cert_file + "' and key '" +
                             config.tls_key_file + "'");
  }
  https_ = std::move(https);
  http_ = std::make_unique<httplib::Server>();
  Limit(*https_);
  Limit(*http_);

  https_->Post("/v1/reports", [this](const httplib::Request& req, httplib::Response& res) {
    const Reply r = endpoints_.ingestion->Handle(req.get_header_value("Authorization"), req.body);
    res.status = r.status;
    res.set_content(r.body, "application/json");
  });
  https_->Post("/mutate", [this](const httplib::Request& req, httplib::Response& res) {
    const AdmissionResult r = endpoints_.admit(req.body);
    res.status = r.http_status;
    res.set_content(r.body.dump(), "application/json");
  });
  const auto ok = [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); };
  const auto ready = [this](const httplib::Request&, httplib::Response& res) {
    const bool is_ready = endpoints_.ready();
    res.status = is_ready ? 200 : 503;
    res.set_content(is_ready ? "ok\n" : "caches not synced\n", "text/plain");
  };
  for (auto* s : {https_.get(), http_.get()}) {
    s->Get("/healthz", ok);
    s->Get("/readyz", ready);
  }
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(endpoints_.metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });

  https_port_ = Bind(*https_, config.https_host, config.https_port, "reports (HTTPS)");
  http_port_ = Bind(*http_, config.http_host, config.http_port, "metrics (HTTP)");
}

Servers::~Servers() { Stop(); }

void Servers::Start() {
  https_thread_ = std::thread([this] { https_->listen_after_bind(); });
  http_thread_ = std::thread([this] { http_->listen_after_bind(); });
}

void Servers::Stop() {
  if (https_) https_->stop();
  if (http_) http_->stop();
  if (https_thread_.joinable()) https_thread_.join();
  if (http_thread_.joinable()) http_thread_.join();
}

}  // namespace gm::reporter
