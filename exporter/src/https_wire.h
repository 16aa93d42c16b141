#pragma once
// The pure halves of the report client's HTTPS POST (the transport itself is
// libcurl, https_client.cpp): the URL it is given (checked at start-up and
// before each POST, so both agree on what is accepted), how much of the reply
// is kept, and how a failed exchange is described. No I/O here, so all are
// tested on literal input (tests/unit/https_wire_test.cpp).

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace gm::exporter {

/// An https:// URL split into what a request needs.
struct HttpsUrl {
  std::string host;    // DNS name or IP literal, IPv6 without brackets
  int port = 443;      //
  std::string target;  // path and query, always starting with '/'

  /// The Host header value: brackets around IPv6, the port unless it is 443.
  std::string HostHeader() const;
};

/// True when `host` is an IPv4 or IPv6 literal (no SNI is sent for those).
bool IsIpLiteral(const std::string& host);

/// Parses "https://host[:port][/path][?query]"; a fragment is dropped. Any
/// other scheme, user info, an empty host or a bad port is an error.
std::optional<HttpsUrl> ParseHttpsUrl(const std::string& url, std::string& error);

/// The reply body as it arrives: the first `keep` bytes are kept (the report
/// client needs the status, and the body only for an error message), the rest
/// counted; past `limit` bytes the transfer is refused (a reporter's answer is
/// tiny; a flood is not read to its end).
class BoundedBody {
 public:
  BoundedBody(size_t keep, size_t limit) : keep_(keep), limit_(limit) {}
  /// Takes `n` more bytes; false once the total passes the limit.
  bool Append(const char* data, size_t n);
  const std::string& kept() const { return kept_; }
  size_t total() const { return total_; }
  size_t limit() const { return limit_; }

 private:
  const size_t keep_;
  const size_t limit_;
  std::string kept_;
  size_t total_ = 0;
};

/// How far an exchange got before it failed.
enum class Stage { kResolve, kConnect, kTlsHandshake, kExchange };

/// What is known about a failed exchange, from libcurl.
struct Failure {
  enum class Kind { kTimeout, kResolve, kConnect, kCertificate, kTls, kTooLarge, kOther };
  Kind kind = Kind::kOther;
  Stage stage = Stage::kResolve;
  std::string host;    // the URL's host name or address
  std::string peer;    // host and port as in the Host header (HttpsUrl::HostHeader)
  std::string detail;  // libcurl's error text; may quote the peer (a certificate's name)
  std::chrono::milliseconds timeout{0};
  size_t limit = 0;  // kTooLarge: the body limit
};

/// One line saying which step failed and why, e.g. "TLS handshake with
/// localhost:8443: server certificate rejected: ...", "no response from
/// localhost:8443 within 5000 ms". libcurl's text is escaped (it can quote
/// the peer's certificate).
std::string Describe(const Failure& f);

}  // namespace gm::exporter
