#include "servers.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "gm/report.h"
#include "tls_reload.h"

namespace gm::reporter {

namespace {

int Bind(httplib::Server& s, const std::string& host, int port, const char* what) {
  const int bound = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) throw std::runtime_error(std::string("cannot listen for ") + what + " on " + host + ":" + std::to_string(port));
  return bound;
}

void Limit(httplib::Server& s, size_t max_body) {
  // Small bodies, short reads: a slow client cannot hold a worker for long.
  s.set_payload_max_length(max_body);
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  // Small answers must leave at once: with Nagle on, each reply waited for
  // the client's delayed ACK (~40 ms), capping report intake per worker.
  s.set_tcp_nodelay(true);
  s.new_task_queue = [] { return new httplib::ThreadPool(4); };
}

}  // namespace

Servers::Servers(const ServersConfig& config, Endpoints endpoints) : endpoints_(std::move(endpoints)) {
  certificate_ = std::make_unique<ReloadingCertificate>(config.tls_cert_file, config.tls_key_file);
  auto https = std::make_unique<httplib::SSLServer>([this](SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    certificate_->Install(&ctx);
    return true;
  });
  if (!https->is_valid()) throw std::runtime_error("cannot set up TLS");
  https_ = std::move(https);
  http_ = std::make_unique<httplib::Server>();
  // The HTTPS listener takes AdmissionReviews, which carry a whole pod; a
  // declared report larger than a report can be is refused before its body
  // is read (the report parser refuses the undeclared ones).
  Limit(*https_, kMaxAdmissionBytes);
  Limit(*http_, kMaxReportBytes);
  https_->set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/mutate" || !req.has_header("Content-Length")) return httplib::Server::HandlerResponse::Unhandled;
    const std::string length = req.get_header_value("Content-Length");
    if (length.size() <= 9 && length.find_first_not_of("0123456789") == std::string::npos && !length.empty() &&
        std::stoul(length) <= kMaxReportBytes) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.status = 413;
    res.set_header("Connection", "close");  // the unread body must not be taken for a request
    res.set_content("{\"error\":\"body larger than " + std::to_string(kMaxReportBytes) + " bytes\"}\n",
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });

  https_->Post("/v1/reports", [this](const httplib::Request& req, httplib::Response& res) {
    const Reply r = endpoints_.ingestion->Handle(req.get_header_value("Authorization"), req.body);
    res.status = r.status;
    res.set_content(r.body, "application/json");
  });
  https_->Post("/mutate", [this](const httplib::Request& req, httplib::Response& res) {
    // The API server says how long it waits (`?timeout=5s`); the lookups
    // end before that, so the answer arrives in time whatever they do.
    const Deadline deadline = std::chrono::steady_clock::now() + LookupBudget(req.get_param_value("timeout"));
    const AdmissionResult r = endpoints_.admit(req.body, deadline);
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
