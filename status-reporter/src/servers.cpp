#include "servers.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "gm/report.h"
#include "tls_reload.h"

namespace gm::reporter {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

namespace {

// An answer refused early (413, 431, 400) leaves unread bytes behind; the
// connection is drained this long before it is closed, so the client reads
// the answer instead of a reset. Memory stays constant while draining.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = size_t{8} * 1024 * 1024;
constexpr size_t kReadChunk = 4096;

// A fixed set of threads taking jobs from a bounded queue: a job that does
// not fit is refused, and the caller answers 503 at once.
class WorkerPool {
 public:
  WorkerPool(std::string name, int threads, size_t capacity)
      : name_(std::move(name)), capacity_(capacity) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~WorkerPool() { Stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  const std::string& name() const { return name_; }

  bool TrySubmit(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      if (stopped_ || queue_.size() >= capacity_) return false;
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

  // Running jobs finish; queued ones are dropped (their connections close).
  void Stop() {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
      dropped.swap(queue_);
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
        if (stopped_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
    }
  }

  const std::string name_;
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopped_ = false;
  std::vector<std::thread> threads_;
};

// One listener's shared state; sessions keep it alive, so it outlives the
// handlers still queued in the io_context at shutdown.
struct ListenerState {
  ListenerState(const char* w, const char* l, bool t, size_t b)
      : what(w), label(l), tls(t), budget(b) {}
  const char* const what;
  const char* const label;  // "https" or "http", the metrics' listener label
  const bool tls;
  const size_t budget;
  std::atomic<size_t> open{0};
  // Refusals over budget are logged once per burst, with their count.
  std::mutex log_mu;
  Clock::time_point last_log{};
  uint64_t refused_since_log = 0;

  void NoteRefusal() {
    std::lock_guard lock(log_mu);
    ++refused_since_log;
    const auto now = Clock::now();
    if (now - last_log < std::chrono::seconds(10)) return;
    spdlog::warn("{}: {} connection(s) closed at accept: {} are open, the budget", what,
                 refused_since_log, budget);
    last_log = now;
    refused_since_log = 0;
  }
};

Response Make(http::status status, std::string body, const char* content_type) {
  Response res{status, 11};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  return res;
}

Response JsonError(http::status status, const std::string& message) {
  return Make(status, nlohmann::json{{"error", message}}.dump() + "\n", "application/json");
}

std::string PathOf(beast::string_view target) {
  const auto q = target.find('?');
  return std::string(target.substr(0, q));
}

// How large a body the target may have, decided from the header alone.
size_t BodyLimit(const std::string& path) {
  return path == "/mutate" ? kMaxAdmissionBytes : kMaxReportBytes;
}

// The endpoint label of status_reporter_bodies_too_large_total.
const char* EndpointOf(const std::string& path) {
  if (path == "/v1/reports") return "reports";
  if (path == "/mutate") return "webhook";
  return "other";
}

std::string TooLarge(size_t limit) {
  return "body larger than " + std::to_string(limit) + " bytes";
}

// The HTTPS budget within the process's descriptor limit (raised to its hard
// limit first): a full budget must leave descriptors for the Kubernetes
// client's connections and watches, the certificate files and the metrics
// port, or accepting reports would break writing the ratios.
size_t HttpsBudget(const ServerLimits& limits) {
  constexpr rlim_t kReserve = 256;
  struct rlimit nofile {};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) return limits.https_connections;
  if (nofile.rlim_cur < nofile.rlim_max) {
    struct rlimit raised = nofile;
    raised.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) nofile = raised;
  }
  if (nofile.rlim_cur == RLIM_INFINITY) return limits.https_connections;
  const rlim_t wanted = limits.https_connections + limits.http_connections + kReserve;
  if (nofile.rlim_cur >= wanted) return limits.https_connections;
  const rlim_t room = nofile.rlim_cur > limits.http_connections + kReserve
                          ? nofile.rlim_cur - limits.http_connections - kReserve
                          : 16;
  const size_t budget = std::max<size_t>(16, static_cast<size_t>(room));
  spdlog::warn("the descriptor limit ({}) leaves room for {} HTTPS connections, not {}",
               nofile.rlim_cur, budget, limits.https_connections);
  return budget;
}

}  // namespace

struct Servers::Impl {
  Impl(const ServersConfig& config, Endpoints ep);
  ~Impl() { Stop(); }
  void Start();
  void Stop();
  tcp::acceptor Bind(const ListenAddress& address, const char* what);
  void Accept(tcp::acceptor& acceptor, const std::shared_ptr<ListenerState>& state);
  void OnAccept(tcp::socket socket, const std::shared_ptr<ListenerState>& state);

  Endpoints endpoints;
  const ServerLimits limits;
  // Declaration order is destruction order reversed: the pools (which call
  // the endpoints) go first, the acceptors before their io_context, the TLS
  // context and certificate after the sessions the io_context may still hold.
  std::unique_ptr<ReloadingCertificate> certificate;
  ssl::context tls{ssl::context::tls_server};
  asio::io_context ioc;
  tcp::acceptor https_acceptor{ioc};
  tcp::acceptor http_acceptor{ioc};
  std::shared_ptr<ListenerState> https_state, http_state;
  int https_port = 0;
  int http_port = 0;
  WorkerPool reports, admission, metrics;
  std::vector<std::thread> io_threads;
  std::atomic<bool> stopped{false};

  template <class F>
  void Count(F&& count) {
    if (endpoints.counters != nullptr) count(*endpoints.counters);
  }
};

namespace {

// A connection's place in its listener's budget, given back when the last
// holder (the wait for the first byte, then the session) lets it go.
using Slot = std::shared_ptr<void>;

Slot TakeSlot(const std::shared_ptr<ListenerState>& state) {
  ++state->open;
  return {nullptr, [state](void*) { --state->open; }};
}

// One connection: handshake (TLS), then requests one at a time, each read
// under one deadline, answered inline (probes) or by a worker pool.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  template <class... Args>
  Session(Servers::Impl& impl, std::shared_ptr<ListenerState> state, Slot slot, Args&&... args)
      : impl_(impl),
        limits_(impl.limits),
        state_(std::move(state)),
        slot_(std::move(slot)),
        stream_(std::forward<Args>(args)...) {}
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// `handshake_deadline`: counted from the accept.
  void Start(Clock::time_point handshake_deadline) {
    if constexpr (kTls) {
      // On the I/O threads, with its own deadline: a peer that never ends
      // its handshake holds one connection slot for this long, no thread.
      Lowest().expires_at(handshake_deadline);
      stream_.async_handshake(
          ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
            if (ec) {
              if (ec != asio::error::operation_aborted) {
                self->impl_.Count([&](ReporterMetrics& m) {
                  m.CountTlsHandshakeFailure(ec == beast::error::timeout ? "timeout" : "error");
                });
              }
              return self->Drop(ec, "TLS handshake");
            }
            self->ReadRequest(true);
          });
    } else {
      ReadRequest(true);
    }
  }

 private:
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void ReadRequest(bool first) {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits_.header_limit));
    // The largest any target takes; lowered once the target is known.
    parser_->body_limit(kMaxAdmissionBytes);
    if (first || buffer_.size() > 0) return ReadHeader();
    // Kept alive: the next request may come later, within the idle timeout;
    // its own deadline starts with its first byte.
    Lowest().expires_after(limits_.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->Drop(ec, "waiting for a request");
                              self->buffer_.commit(n);
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    // One deadline for the header and the body together: not reset per
    // byte, so a client trickling its request is cut off here.
    Lowest().expires_after(limits_.request_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return Refuse(
          http::status::request_header_fields_too_large,
          "request header larger than " + std::to_string(limits_.header_limit) + " bytes");
    }
    if (ec == http::error::body_limit) {  // a declared length above every target's limit; the
                                          // header is parsed
      return RefuseTooLarge(PathOf(parser_->get().target()));
    }
    if (ec) return Failed(ec, "reading a request header");
    const auto& req = parser_->get();
    const size_t limit = BodyLimit(PathOf(req.target()));
    // Chunked bodies too: the parser counts what it decodes against this.
    parser_->body_limit(limit);
    if (const auto length = parser_->content_length(); length && *length > limit) {
      return RefuseTooLarge(PathOf(req.target()));
    }
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      continue_.emplace(http::status::continue_, req.version());
      return http::async_write(stream_, *continue_,
                               [self = this->shared_from_this()](beast::error_code wec, size_t) {
                                 if (wec) return self->Drop(wec, "writing 100 Continue");
                                 self->ReadBody();
                               });
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec == http::error::body_limit) {
                         return self->RefuseTooLarge(PathOf(self->parser_->get().target()));
                       }
                       if (ec) return self->Failed(ec, "reading a request body");
                       self->request_ = self->parser_->release();
                       self->parser_.reset();
                       // The handler's time is not the client's; the pools bound it.
                       self->Lowest().expires_never();
                       self->Route();
                     });
  }

  void Route() {
    const std::string path = PathOf(request_.target());
    const auto method = request_.method();
    const auto only = [&](http::verb allowed) {
      if (method == allowed) return true;
      Respond(Make(http::status::method_not_allowed, "method not allowed\n", "text/plain"));
      return false;
    };
    if (path == "/healthz") {
      // Inline on the I/O thread, never behind a worker: the kubelet's
      // liveness probe must not fail because reports are slow.
      if (only(http::verb::get)) Respond(Make(http::status::ok, "ok\n", "text/plain"));
    } else if (path == "/readyz") {
      if (!only(http::verb::get)) return;
      const bool ready = impl_.endpoints.ready();
      Respond(Make(ready ? http::status::ok : http::status::service_unavailable,
                   ready ? "ok\n" : "caches not synced\n", "text/plain"));
    } else if (kTls && path == "/v1/reports") {
      if (!only(http::verb::post)) return;
      OnPool(impl_.reports, [](Servers::Impl& impl, const Request& req) {
        const Reply r = impl.endpoints.ingestion->Handle(
            std::string(req[http::field::authorization]), req.body());
        return Make(static_cast<http::status>(r.status), r.body, "application/json");
      });
    } else if (kTls && path == "/mutate") {
      if (!only(http::verb::post)) return;
      OnPool(impl_.admission, [](Servers::Impl& impl, const Request& req) {
        // The API server says how long it waits (`?timeout=5s`); the lookups
        // end before that, so the answer arrives in time whatever they do.
        const Deadline deadline =
            Clock::now() + LookupBudget(QueryParameter(std::string(req.target()), "timeout"));
        const AdmissionResult r = impl.endpoints.admit(req.body(), deadline);
        return Make(static_cast<http::status>(r.http_status), r.body.dump(), "application/json");
      });
    } else if (!kTls && path == "/metrics") {
      if (!only(http::verb::get)) return;
      OnPool(impl_.metrics, [](Servers::Impl& impl, const Request&) {
        return Make(http::status::ok, impl.endpoints.metrics(),
                    "text/plain; version=0.0.4; charset=utf-8");
      });
    } else {
      Respond(Make(http::status::not_found, "not found\n", "text/plain"));
    }
  }

  // Runs `handler` on `pool`, or answers 503 at once when the pool is full.
  template <class Handler>
  void OnPool(WorkerPool& pool, Handler handler) {
    const auto queued = Clock::now();
    auto self = this->shared_from_this();
    const bool taken = pool.TrySubmit([self, handler, queued, &pool] {
      Response res;
      if (Clock::now() - queued > self->limits_.request_timeout) {
        res = self->Busy();  // its client has likely given up; do not start work for nobody
        self->impl_.Count([&](ReporterMetrics& m) { m.CountPoolFull(pool.name()); });
      } else {
        try {
          res = handler(self->impl_, self->request_);
        } catch (const std::exception& e) {
          spdlog::error("{} {}: {}", self->state_->what, PathOf(self->request_.target()), e.what());
          res = JsonError(http::status::internal_server_error, "internal error");
        }
      }
      asio::post(self->stream_.get_executor(),
                 [self, res = std::move(res)]() mutable { self->Respond(std::move(res)); });
    });
    if (!taken) {
      impl_.Count([&](ReporterMetrics& m) { m.CountPoolFull(pool.name()); });
      Respond(Busy());
    }
  }

  Response Busy() const {
    Response res =
        PathOf(request_.target()) == "/v1/reports"
            ? Make(http::status::service_unavailable,
                   R"({"result":"busy","message":"too many reports in progress; retry"})",
                   "application/json")
            : JsonError(http::status::service_unavailable, "too many requests in progress; retry");
    res.set(http::field::retry_after, "1");
    return res;
  }

  void Respond(Response res) {
    res.keep_alive(request_.keep_alive());
    Write(std::move(res));
  }

  void RefuseTooLarge(const std::string& path) {
    impl_.Count([&](ReporterMetrics& m) { m.CountBodyTooLarge(EndpointOf(path)); });
    Refuse(http::status::payload_too_large, TooLarge(BodyLimit(path)));
  }

  // Answers a request whose body is left unread, then closes.
  void Refuse(http::status status, const std::string& message) {
    linger_ = true;
    Response res = JsonError(status, message);
    res.keep_alive(false);  // the unread body must not be taken for a request
    Write(std::move(res));
  }

  void Write(Response res) {
    response_ = std::move(res);
    response_.prepare_payload();
    Lowest().expires_after(limits_.write_timeout);
    http::async_write(stream_, response_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->Drop(ec, "writing an answer");
                        if (self->linger_) return self->Linger();
                        if (!self->response_.keep_alive()) return self->Close();
                        self->request_ = {};
                        self->response_ = {};
                        self->ReadRequest(false);
                      });
  }

  // A request that could not be read: a malformed one gets 400; a timeout
  // or a vanished peer just loses the connection.
  void Failed(beast::error_code ec, const char* what) {
    if (ec == beast::error::timeout) {
      impl_.Count([&](ReporterMetrics& m) { m.CountRequestTimeout(state_->label); });
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return Refuse(http::status::bad_request, "malformed request: " + ec.message());
    }
    Drop(ec, what);
  }

  void Drop(beast::error_code ec, const char* what) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::operation_aborted)
      return;
    spdlog::debug("{}: connection dropped while {}: {}", state_->what, what, ec.message());
  }

  void Close() {
    if constexpr (kTls) {
      Lowest().expires_after(std::chrono::seconds(1));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
        beast::error_code ignored;
        self->Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
      });
    } else {
      beast::error_code ignored;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  void Linger() {
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    Lowest().expires_after(kLingerTime);
    drain_ = std::make_unique<char[]>(kReadChunk);
    Drain();
  }

  void Drain() {
    // Below TLS: these bytes are thrown away unread.
    Lowest().async_read_some(asio::buffer(drain_.get(), kReadChunk),
                             [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                               self->drained_ += n;
                               if (!ec && self->drained_ < kLingerBytes) self->Drain();
                             });
  }

  Servers::Impl& impl_;
  const ServerLimits& limits_;
  std::shared_ptr<ListenerState> state_;
  Slot slot_;
  Stream stream_;
  beast::flat_buffer buffer_{size_t{64} * 1024};
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  Request request_;
  Response response_;
  bool linger_ = false;
  std::unique_ptr<char[]> drain_;
  size_t drained_ = 0;
};

}  // namespace

Servers::Impl::Impl(const ServersConfig& config, Endpoints ep)
    : endpoints(std::move(ep)),
      limits(config.limits),
      certificate(
          std::make_unique<ReloadingCertificate>(config.tls_cert_file, config.tls_key_file)),
      https_state(std::make_shared<ListenerState>("reports (HTTPS)", "https", true,
                                                  HttpsBudget(config.limits))),
      http_state(std::make_shared<ListenerState>("metrics (HTTP)", "http", false,
                                                 config.limits.http_connections)),
      reports("reports", config.limits.report_workers, config.limits.report_queue),
      admission("webhook", config.limits.admission_workers, config.limits.admission_queue),
      metrics("metrics", config.limits.metrics_workers, config.limits.metrics_queue) {
  SSL_CTX* ctx = tls.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION |
                               SSL_OP_NO_RENEGOTIATION);
  // Idle connections give their record buffers back to the heap.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  certificate->Install(ctx);
  https_acceptor = Bind(config.https, "reports (HTTPS)");
  http_acceptor = Bind(config.http, "metrics (HTTP)");
  https_port = https_acceptor.local_endpoint().port();
  http_port = http_acceptor.local_endpoint().port();
}

tcp::acceptor Servers::Impl::Bind(const ListenAddress& address, const char* what) {
  const auto fail = [&](const std::string& why) {
    return std::runtime_error(std::string("cannot listen for ") + what + " on " +
                              FormatListenAddress(address) + ": " + why);
  };
  const bool wildcard = address.host.empty();
  std::vector<tcp::endpoint> candidates;
  if (wildcard) {
    // Dual-stack: one IPv6 socket that also takes IPv4; 0.0.0.0 on a host
    // without IPv6.
    candidates = {tcp::endpoint(tcp::v6(), address.port), tcp::endpoint(tcp::v4(), address.port)};
  } else {
    beast::error_code ec;
    const auto literal = asio::ip::make_address(address.host, ec);
    if (!ec) {
      candidates = {tcp::endpoint(literal, address.port)};
    } else {
      tcp::resolver resolver(ioc);
      const auto results =
          resolver.resolve(address.host, std::to_string(address.port), tcp::resolver::passive, ec);
      if (ec || results.empty())
        throw fail("cannot resolve '" + address.host + "': " + ec.message());
      candidates = {results.begin()->endpoint()};
    }
  }
  std::string why;
  for (const auto& endpoint : candidates) {
    tcp::acceptor acceptor(ioc);
    beast::error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (ec) {  // no IPv6 in this kernel or network namespace
      why = ec.message();
      continue;
    }
    if (wildcard && endpoint.address().is_v6()) acceptor.set_option(asio::ip::v6_only(false), ec);
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    acceptor.bind(endpoint, ec);
    if (ec) {
      why = ec.message();
      // Only a missing IPv6 falls back; a port in use is an error to report.
      if (wildcard && (ec == boost::system::errc::address_not_available ||
                       ec == asio::error::address_family_not_supported)) {
        continue;
      }
      throw fail(why);
    }
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw fail(ec.message());
    return acceptor;
  }
  throw fail(why);
}

void Servers::Impl::Start() {
  Accept(https_acceptor, https_state);
  Accept(http_acceptor, http_state);
  for (int i = 0; i < limits.io_threads; ++i) io_threads.emplace_back([this] { ioc.run(); });
}

void Servers::Impl::Accept(tcp::acceptor& acceptor, const std::shared_ptr<ListenerState>& state) {
  acceptor.async_accept(
      asio::make_strand(ioc), [this, &acceptor, state](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (ec) {
          // Out of descriptors, typically: pause instead of spinning on accept.
          spdlog::warn("{}: accept failed: {}", state->what, ec.message());
          auto timer = std::make_shared<asio::steady_timer>(ioc, std::chrono::milliseconds(100));
          timer->async_wait(
              [this, &acceptor, state, timer](beast::error_code) { Accept(acceptor, state); });
          return;
        }
        OnAccept(std::move(socket), state);
        Accept(acceptor, state);
      });
}

void Servers::Impl::OnAccept(tcp::socket socket, const std::shared_ptr<ListenerState>& state) {
  if (state->open.load() >= state->budget) {
    state->NoteRefusal();
    Count([&](ReporterMetrics& m) { m.CountConnectionRefused(state->label); });
    beast::error_code ignored;
    socket.close(ignored);
    return;
  }
  Slot slot = TakeSlot(state);
  beast::error_code ignored;
  // Small answers must leave at once: with Nagle on, each reply waited for
  // the client's delayed ACK (~40 ms).
  socket.set_option(tcp::no_delay(true), ignored);
  const auto handshake_deadline = Clock::now() + limits.handshake_timeout;
  if (!state->tls) {
    std::make_shared<Session<beast::tcp_stream>>(*this, state, std::move(slot), std::move(socket))
        ->Start(handshake_deadline);
    return;
  }
  // The TLS stream (OpenSSL's and Asio's buffers, ~100 KiB) is made only
  // once the client has sent something: a silent connection costs a socket
  // and a timer until the handshake deadline.
  struct FirstByte {
    // The timer runs on the socket's strand: its expiry and the wait never race.
    explicit FirstByte(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
    tcp::socket socket;
    asio::steady_timer timer;
  };
  auto wait = std::make_shared<FirstByte>(std::move(socket));
  wait->timer.expires_at(handshake_deadline);
  wait->timer.async_wait([this, wait](beast::error_code ec) {
    if (ec) return;  // cancelled: the client spoke in time
    // A handshake that never began is one that did not finish in time.
    Count([](ReporterMetrics& m) { m.CountTlsHandshakeFailure("timeout"); });
    beast::error_code ignored_close;
    wait->socket.close(ignored_close);
  });
  wait->socket.async_wait(tcp::socket::wait_read,
                          [this, wait, state, slot = std::move(slot),
                           handshake_deadline](beast::error_code ec) mutable {
                            wait->timer.cancel();
                            if (ec) return;  // closed at the deadline, or shutting down
                            std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
                                *this, state, std::move(slot), std::move(wait->socket), tls)
                                ->Start(handshake_deadline);
                          });
}

void Servers::Impl::Stop() {
  if (stopped.exchange(true)) return;
  reports.Stop();
  admission.Stop();
  metrics.Stop();
  ioc.stop();
  for (auto& t : io_threads) {
    if (t.joinable()) t.join();
  }
  io_threads.clear();
  beast::error_code ignored;
  https_acceptor.close(ignored);
  http_acceptor.close(ignored);
}

Servers::Servers(const ServersConfig& config, Endpoints endpoints)
    : impl_(std::make_unique<Impl>(config, std::move(endpoints))) {}
Servers::~Servers() { Stop(); }
void Servers::Start() { impl_->Start(); }
void Servers::Stop() { impl_->Stop(); }
int Servers::https_port() const { return impl_->https_port; }
int Servers::http_port() const { return impl_->http_port; }

std::string QueryParameter(const std::string& target, const std::string& name) {
  const auto q = target.find('?');
  if (q == std::string::npos) return "";
  size_t pos = q + 1;
  while (pos <= target.size()) {
    const auto end = std::min(target.find('&', pos), target.size());
    const std::string pair = target.substr(pos, end - pos);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      const std::string raw = eq == std::string::npos ? "" : pair.substr(eq + 1);
      std::string out;
      for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '%' && i + 2 < raw.size() &&
            std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
          out += static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          out += raw[i] == '+' ? ' ' : raw[i];
        }
      }
      return out;
    }
    pos = end + 1;
  }
  return "";
}

}  // namespace gm::reporter
