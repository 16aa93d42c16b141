#pragma once
// A small single-threaded HTTP/1.1 server on epoll, listening on a unix socket
// and optionally on TCP. It serves only tiny GET responses built from caches,
// so one thread with keep-alive is enough and keeps the sidecar's footprint small.

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
  std::chrono::milliseconds tick_interval{5000};  // how often `tick` runs; wake-ups cost idle CPU
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

  /// Serves until Stop(); calls `tick` every tick_interval.
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
    std::chrono::steady_clock::time_point last_active;
  };
  void Accept(int listener);
  void OnReadable(int fd);
  void OnWritable(int fd);
  void Close(int fd);
  void ServeBuffered(int fd, Conn& c);
  void CloseIdle();

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
};

/// Parses "host:port" / ":port" / "[v6]:port". Throws std::invalid_argument.
std::pair<std::string, int> ParseListenAddress(const std::string& address);

/// Sends GET `path` over the unix socket and returns the HTTP status, or -1
/// with `error` set when no answer came within `timeout`. Used by the exec
/// probe mode, so it must never hang.
int HttpGetUnix(const std::string& socket_path, const std::string& path,
                std::chrono::milliseconds timeout, std::string& body, std::string& error);

}  // namespace gm::exporter
