#pragma once
// The report client's transport: one HTTPS/1.1 POST per call over GnuTLS,
// which libvirt already loads into the process. It replaces libcurl, whose
// OpenSSL build and protocol zoo cost every sidecar megabytes of RSS for a
// single POST every two minutes.

#include <chrono>
#include <string>
#include <vector>

namespace gm::exporter {

/// What came back from one POST: an HTTP status (0 when none arrived) with
/// the start of the body, or an error saying which step failed and why.
struct HttpExchange {
  int status = 0;
  std::string body;
  std::string error;
};

/// Sends one POST. The real one is HTTPS over GnuTLS; unit tests use a
/// recording fake.
class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  /// POSTs `body` to `url`; `headers` are complete "Name: value" lines added
  /// to the request. Returns within about `timeout`, whatever the peer does.
  virtual HttpExchange Post(const std::string& url, const std::vector<std::string>& headers,
                            const std::string& body, std::chrono::milliseconds timeout) = 0;
};

/// Which CAs the server certificate must chain to.
struct TlsTrust {
  std::string ca_pem;   // inline PEM; wins over ca_file
  std::string ca_file;  // PEM file, re-read at each POST so a rotated CA is picked up
  // both empty: the system's trust store
};

/// Counts the certificates in `pem`; -1 with `error` set when it holds none or
/// does not parse. Lets main() refuse a bad --reporter-ca-pem at start-up.
int CountPemCertificates(const std::string& pem, std::string& error);

/// HTTPS POST over GnuTLS: certificate chain and server name checked against
/// the URL's host (DNS name or IP address), SNI for DNS names, one deadline
/// over name resolution, connect, handshake, send and receive, and
/// "Connection: close" (one report every interval does not pay for keeping a
/// TLS session open). Nothing is kept between calls.
class GnuTlsTransport final : public HttpTransport {
 public:
  explicit GnuTlsTransport(TlsTrust trust) : trust_(std::move(trust)) {}
  HttpExchange Post(const std::string& url, const std::vector<std::string>& headers,
                    const std::string& body, std::chrono::milliseconds timeout) override;

 private:
  const TlsTrust trust_;
};

}  // namespace gm::exporter
