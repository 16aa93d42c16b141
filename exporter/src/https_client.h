#pragma once
// The report client's transport: one HTTPS/1.1 POST per call over libcurl's
// GnuTLS build (libcurl-gnutls.so.4), the very library Debian's libvirt
// already maps into every sidecar, so it costs no extra library
// (docs/benchmarks.md, "guest-exporter: report client on libcurl").

#include <chrono>
#include <optional>
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

/// Sends one POST. The real one is HTTPS over libcurl; unit tests use a
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
  // both empty: the system's trust store (libcurl's default CA bundle)
};

/// Counts the certificates in `pem`; nullopt with `error` set when it holds
/// none or does not parse. Lets main() refuse a bad --reporter-ca-pem at start-up.
std::optional<int> CountPemCertificates(const std::string& pem, std::string& error);

/// HTTPS POST over libcurl (GnuTLS build): certificate chain and server name
/// checked against the URL's host (DNS name or IP address), SNI for DNS names,
/// one deadline over name resolution, connect, handshake, send and receive
/// (CURLOPT_TIMEOUT_MS and CURLOPT_CONNECTTIMEOUT_MS, the threaded resolver,
/// no signals), no proxy, no redirects, HTTP/1.1 and "Connection: close" (one
/// report every interval does not pay for keeping a TLS session open). The CA
/// is read again at every POST and handed to libcurl through a memfd
/// (CURLOPT_CAINFO=/proc/self/fd/N): curl 7.88's GnuTLS backend has no
/// CURLOPT_CAINFO_BLOB, and what libcurl reads is exactly what was checked.
/// Nothing is kept between calls. At most kKeptBodyBytes of the reply are kept;
/// a reply larger than kMaxResponseBytes is cut off as an error.
class CurlTransport final : public HttpTransport {
 public:
  static constexpr size_t kKeptBodyBytes = 512;
  static constexpr size_t kMaxResponseBytes = size_t{64} * 1024;

  explicit CurlTransport(TlsTrust trust);
  HttpExchange Post(const std::string& url, const std::vector<std::string>& headers,
                    const std::string& body, std::chrono::milliseconds timeout) override;

 private:
  const TlsTrust trust_;
};

}  // namespace gm::exporter
