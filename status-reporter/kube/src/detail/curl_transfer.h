#pragma once
// The only place that talks to libcurl: one connection (an easy handle run
// through its own multi handle, so a stop flag can end a transfer within
// 100 ms and the multi handle's connection cache keeps the TCP+TLS
// connection alive between requests).

#include <atomic>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gm/kube/config.h"

using CURL = void;  // as <curl/curl.h> declares them, without including it
using CURLM = void;

namespace gm::kube::detail {

struct HttpRequest {
  std::string method;
  std::string url;
  std::vector<std::string> headers;  ///< "Name: value"
  const std::string* body = nullptr;
  std::chrono::milliseconds timeout{0};  ///< whole transfer; 0: none (watch streams)
  std::chrono::milliseconds connect_timeout{0};
};

struct HttpResult {
  int code = 0;               ///< HTTP status; 0 when none arrived
  bool failed = false;        ///< the transfer did not complete (even if a status arrived)
  bool nothing_sent = false;  ///< failed before the request went out: safe to retry any verb
  bool cancelled = false;     ///< a stop flag ended it
  std::string error;          ///< curl's description when failed
  std::multimap<std::string, std::string> headers;  ///< names in lower case
  std::string body;  ///< the body, unless a 2xx body went to the sink
  double seconds = 0;
};

/// Receives a 2xx body as it arrives; returning false ends the transfer
/// quietly. An exception thrown here is rethrown by Perform.
using BodySink = std::function<bool(std::string_view data)>;

class CurlConnection {
 public:
  CurlConnection();
  ~CurlConnection();
  CurlConnection(const CurlConnection&) = delete;
  CurlConnection& operator=(const CurlConnection&) = delete;

  /// Runs one request with the TLS settings of `tls`.
  HttpResult Perform(const HttpRequest& request, const Config& tls, const BodySink* sink,
                     std::initializer_list<const std::atomic<bool>*> stop);

 private:
  CURL* easy_;
  CURLM* multi_;
};

/// Percent-encodes a query key or value (everything but RFC 3986 unreserved characters).
std::string UrlEncode(std::string_view s);

}  // namespace gm::kube::detail
