#pragma once
// One HTTP/1.1 connection's request handling without a socket: bytes in,
// response bytes out. The server (http_server.h) moves the bytes and keeps
// the clocks; the fuzz target (tests/fuzz/http_request_fuzz.cpp) drives this
// directly. Parsing is Boost.Beast's request_parser with a header limit.
//
// At most one response exists at a time: while it is unsent, wanted() is 0 and
// the server reads nothing more, so a client that pipelines requests and never
// reads holds one response and at most kMaxRequestHeaderBytes of input.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

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

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

/// The largest request head (request line and headers) accepted; larger gets 431.
inline constexpr size_t kMaxRequestHeaderBytes = 8192;

class HttpSession {
 public:
  /// `handler` must outlive the exchange.
  explicit HttpSession(const HttpHandler& handler) : handler_(handler) {}

  /// How many more bytes Feed() takes now: 0 while a response is unsent or
  /// the connection is to be closed.
  size_t wanted() const;
  /// Takes at most wanted() bytes (more is a programming error and ignored).
  void Feed(std::string_view bytes);
  /// A response is ready in response() and must be sent before anything else.
  bool response_ready() const { return !out_.empty(); }
  const std::string& response() const { return out_; }
  /// The response was sent; serves the next complete buffered request, if any.
  void ResponseSent();
  /// Close the connection once response() (if any) is sent.
  bool closing() const { return closing_; }
  /// Part of a request has arrived and its response is not yet sent: the
  /// whole-request deadline runs.
  bool mid_request() const { return !in_.empty() || response_ready(); }

 private:
  void Parse();
  void Respond(const HttpResponse& r, bool head_only);

  const HttpHandler& handler_;
  std::string in_;
  std::string out_;
  bool closing_ = false;
};

/// What one listener refused or cut since start: for /metrics, so that abuse
/// or overload shows without reading logs.
struct HttpListenerStats {
  const char* listener = "";  // "tcp" or "unix"
  /// Connections closed at accept: the listener's budget was full.
  uint64_t refused = 0;
  /// Times accepting paused because the process was out of descriptors.
  uint64_t accept_pauses = 0;
  /// Connections closed by the request deadline: a request not received and
  /// answered in time (a silent connection counts from its accept).
  uint64_t request_timeouts = 0;
  /// Kept-alive connections closed by the idle timeout.
  uint64_t idle_timeouts = 0;
};

}  // namespace gm::exporter
