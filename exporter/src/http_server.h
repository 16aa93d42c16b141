#pragma once
// A small single-threaded HTTP/1.1 server on epoll, listening on a unix socket
// and optionally on TCP. It serves only tiny GET responses built from caches,
// so one thread with keep-alive is enough and keeps the sidecar's footprint small.
// It has no clock of its own: an idle server sleeps until a request, a shutdown,
// its `tick_fd`, or (only while connections are open) the next idle-close is due.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <string>

namespace gm::exporter {

struct HttpRequest {
  std::string method;
  std::string path;  // without the query string
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpServerOptions {
  std::string unix_socket;     // required
  std::string listen_address;  // "host:port", ":port" or "" for none
  size_t max_connections = 256;
  std::chrono::seconds idle_timeout{60};
  /// When readable, `tick` runs on the server thread and must make it
  /// unreadable again (e.g. a timerfd another thread arms, which it reads).
  /// -1: none. This replaces a periodic tick: wake-ups cost idle CPU.
  int tick_fd = -1;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  using Tick = std::function<void()>;

  /// Binds the listeners; throws std::runtime_error with the reason on failure.
  HttpServer(HttpServerOptions options, Handler handler, Tick tick);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Serves until Stop(); calls `tick` whenever options.tick_fd is readable.
  void Run();
  /// Safe from any thread or a signal handler.
  void Stop();
  /// The TCP port actually bound (useful with port 0), or 0 without TCP.
  int tcp_port() const { return tcp_port_; }

 private:
  struct Conn {
    std::string in;
    std::string out;
    bool close_after_write = false;
    // EPOLLOUT is registered; changed only when it must be, which saves an
    // epoll_ctl per scrape.
    bool watching_out = false;
    std::chrono::steady_clock::time_point last_active;
  };
  void Accept(int listener);
  void OnReadable(int fd);
  void OnWritable(int fd);
  void Close(int fd);
  void ServeBuffered(int fd, Conn& c);
  void CloseIdle();
  int WaitMillis() const;  // epoll_wait's timeout: -1 (forever) without connections

  HttpServerOptions options_;
  Handler handler_;
  Tick tick_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int unix_fd_ = -1;
  int tcp_fd_ = -1;
  int tcp_port_ = 0;
  std::atomic<bool> stop_{false};
  std::map<int, Conn> conns_;
  std::chrono::steady_clock::time_point next_idle_check_{};
};

/// Parses "host:port" / ":port" / "[v6]:port". Throws std::invalid_argument.
std::pair<std::string, int> ParseListenAddress(const std::string& address);

/// Sends GET `path` over the unix socket and returns the HTTP status, or -1
/// with `error` set when no answer came within `timeout`. Used by the exec
/// probe mode, so it must never hang.
int HttpGetUnix(const std::string& socket_path, const std::string& path,
                std::chrono::milliseconds timeout, std::string& body, std::string& error);

}  // namespace gm::exporter
