#pragma once
// A small single-threaded HTTP/1.1 server on Boost.Asio, listening on a unix
// socket and optionally on TCP. It serves only tiny GET responses built from
// caches, so one thread with keep-alive is enough and keeps the sidecar's
// footprint small. Request handling (parsing, limits, responses) is in
// http_protocol.h; this file moves bytes and keeps the clocks.
//
// Limits, each against a way one client could hurt the rest:
// - a deadline for each whole request, from its first byte (or the accept)
//   until its response is sent: bytes trickled one by one do not extend it;
// - an idle timeout between keep-alive requests;
// - separate connection budgets for unix and TCP clients, so that TCP clients
//   can never take the slots of the unix socket (local tools, health checks);
// - one response in flight per connection: nothing more is read while it is
//   unsent, so a client that pipelines and never reads costs one response;
// - out of descriptors (EMFILE/ENFILE), accepting pauses for a second
//   instead of spinning, and says so once per burst.
// Each listener counts what it refused or cut (stats(), shown on /metrics).
// An idle server sleeps: no timer runs without connections, and the only
// other wake-ups are `tick_fd`, Stop() and Ping().

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http_protocol.h"

namespace gm::exporter {

struct HttpServerOptions {
  std::string unix_socket;  // "" for none (e.g. its directory could not be created)
  std::string
      listen_address;  // "host:port", ":port" (dual-stack) or "" for none; gm::ParseListenAddress
  size_t max_tcp_connections = 512;
  size_t max_unix_connections = 32;
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  /// How long accepting pauses when the process is out of descriptors.
  std::chrono::milliseconds accept_pause{1000};
  /// When readable, `tick` runs on the server thread and must make it
  /// unreadable again (e.g. a timerfd another thread arms, which it reads).
  /// -1: none. This replaces a periodic tick: wake-ups cost idle CPU.
  int tick_fd = -1;
};

class HttpServer {
 public:
  using Handler = HttpHandler;
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
  /// Runs `done` on the server thread (from any thread): the watchdog's proof
  /// that the thread still turns.
  void Ping(std::function<void()> done);
  /// The TCP port actually bound (useful with port 0), or 0 without TCP.
  int tcp_port() const;
  /// Connections open now, by kind (for tests and logs; server thread only).
  size_t open_tcp() const;
  size_t open_unix() const;
  /// One entry per listener that is on (unix first); server thread only,
  /// like the handler, which is where /metrics reads it.
  std::vector<HttpListenerStats> stats() const;

  struct Impl;  // Asio stays out of this header (and of every file that includes it)

 private:
  std::unique_ptr<Impl> impl_;
};

/// Sends GET `path` over the unix socket and returns the HTTP status, or -1
/// with `error` set when no answer came within `timeout`. Used by the probe
/// subcommand, so it must never hang.
int HttpGetUnix(const std::string& socket_path, const std::string& path,
                std::chrono::milliseconds timeout, std::string& body, std::string& error);

}  // namespace gm::exporter
