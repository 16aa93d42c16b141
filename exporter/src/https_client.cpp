#include "https_client.h"

#include <curl/curl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "gm/build_info.h"
#include "gm/errno_text.h"
#include "gm/unique_fd.h"
#include "https_wire.h"
#include "small_file.h"

namespace gm::exporter {

using std::chrono::milliseconds;

namespace {

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct ListDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// The CA bundle for this POST, read now and checked (a clear error instead of
// a handshake failure), then put in a memfd that libcurl opens by path.
// Returns the path ("" = libcurl's default bundle) or "" with `error` set.
// A CA bundle, even the whole public trust store, is far below this.
constexpr size_t kMaxCaBytes = 4 << 20;

std::string PrepareTrust(const TlsTrust& trust, UniqueFd& memfd, std::string& error) {
  if (trust.ca_pem.empty() && trust.ca_file.empty()) return "";
  std::string pem = trust.ca_pem;
  std::string source = "the inline CA PEM";
  if (pem.empty()) {
    source = "CA file " + trust.ca_file;
    std::string why;
    if (!ReadSmallFile(trust.ca_file, kMaxCaBytes, pem, why)) {
      error = "cannot load " + source + ": " + why;
      return "";
    }
  }
  std::string why;
  if (!CountPemCertificates(pem, why)) {
    error = "no CA certificate in " + source + " (" + why + ")";
    if (!trust.ca_pem.empty()) error = "no CA certificate in " + source;
    return "";
  }
  memfd.Reset(memfd_create("gm-reporter-ca", MFD_CLOEXEC));
  if (memfd.get() < 0) {
    error = std::string("cannot hold the CA for libcurl: memfd_create: ") + gm::ErrnoText(errno);
    return "";
  }
  for (size_t off = 0; off < pem.size();) {
    const ssize_t n = ::write(memfd.get(), pem.data() + off, pem.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = std::string("cannot hold the CA for libcurl: write: ") + gm::ErrnoText(errno);
      return "";
    }
    off += static_cast<size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(memfd.get());
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<BoundedBody*>(user);
  return body->Append(data, size * n) ? size * n : 0;  // 0 ends the transfer
}

Failure::Kind KindOf(CURLcode rc) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return Failure::Kind::kTimeout;
    case CURLE_COULDNT_RESOLVE_HOST:
      return Failure::Kind::kResolve;
    case CURLE_COULDNT_CONNECT:
      return Failure::Kind::kConnect;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
      return Failure::Kind::kCertificate;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ISSUER_ERROR:
      return Failure::Kind::kTls;
    default:
      return Failure::Kind::kOther;
  }
}

}  // namespace

std::optional<int> CountPemCertificates(const std::string& pem, std::string& error) {
  gnutls_x509_crt_t* list = nullptr;
  unsigned count = 0;
  gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(pem.data())),
                   static_cast<unsigned>(pem.size())};
  const int rc = gnutls_x509_crt_list_import2(&list, &count, &d, GNUTLS_X509_FMT_PEM, 0);
  if (rc < 0) {
    error = gnutls_strerror(rc);
    return std::nullopt;
  }
  for (unsigned i = 0; i < count; ++i) gnutls_x509_crt_deinit(list[i]);
  gnutls_free(list);
  if (count == 0) {
    error = "no certificate found";
    return std::nullopt;
  }
  return static_cast<int>(count);
}

CurlTransport::CurlTransport(TlsTrust trust) : trust_(std::move(trust)) {
  // Once per process, before the first handle (libcurl's rule).
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpExchange CurlTransport::Post(const std::string& url_text,
                                 const std::vector<std::string>& headers, const std::string& body,
                                 milliseconds timeout) {
  HttpExchange ex;
  const auto fail = [&](std::string error) {
    ex.status = 0;
    ex.error = std::move(error);
    return ex;
  };
  std::string error;
  const auto url = ParseHttpsUrl(url_text, error);  // the same check as --reporter-url's
  if (!url) return fail(error);
  Failure facts;
  facts.host = url->host;
  facts.peer = url->HostHeader();
  facts.timeout = timeout;
  facts.limit = kMaxResponseBytes;

  UniqueFd ca_fd;
  const std::string ca_path = PrepareTrust(trust_, ca_fd, error);
  if (!error.empty()) return fail(error);

  const std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  if (!easy) return fail("cannot start a libcurl handle");
  curl_slist* raw_list = nullptr;
  for (const auto& h : headers) raw_list = curl_slist_append(raw_list, h.c_str());
  raw_list = curl_slist_append(raw_list, "Connection: close");
  raw_list = curl_slist_append(raw_list, "Expect:");  // no 100-continue round trip
  const std::unique_ptr<curl_slist, ListDeleter> list(raw_list);
  const std::string user_agent = std::string("guest-exporter/") + gm::kVersion;
  BoundedBody reply(kKeptBodyBytes, kMaxResponseBytes);
  char errbuf[CURL_ERROR_SIZE] = "";

  CURL* c = easy.get();
  curl_easy_setopt(c, CURLOPT_URL, url_text.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads; the deadline never relies on SIGALRM
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  // The reporter is in-cluster: no proxy from the environment.
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!ca_path.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, ca_path.c_str());
    // Only that CA: Debian's libcurl also has a default CA directory
    // (/etc/ssl/certs), which would add every system CA to the trust (and
    // parse ~140 certificates, megabytes of heap, at every POST).
    curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
  }
  curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    facts.kind = rc == CURLE_WRITE_ERROR && reply.total() > reply.limit() ? Failure::Kind::kTooLarge
                                                                          : KindOf(rc);
    facts.detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    curl_off_t resolved = 0, handshaken = 0;
    long local_port = 0, os_errno = 0;  // NOLINT(runtime/int): libcurl's types
    curl_easy_getinfo(c, CURLINFO_NAMELOOKUP_TIME_T, &resolved);
    curl_easy_getinfo(c, CURLINFO_APPCONNECT_TIME_T, &handshaken);
    // curl 7.88 sets its connect time only once TLS is up too; a local port
    // says the TCP connection itself was made.
    curl_easy_getinfo(c, CURLINFO_LOCAL_PORT, &local_port);
    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
    if (facts.kind == Failure::Kind::kConnect && os_errno != 0) {
      facts.detail = gm::ErrnoText(static_cast<int>(os_errno));  // "Connection refused"
    }
    if (facts.kind == Failure::Kind::kCertificate && !ca_path.empty()) {
      // Name the CA the user gave, not the memfd that carried it.
      const auto at = facts.detail.find(ca_path);
      if (at != std::string::npos)
        facts.detail.replace(at, ca_path.size(),
                             trust_.ca_pem.empty() ? trust_.ca_file : "inline PEM");
    }
    facts.stage = handshaken > 0                           ? Stage::kExchange
                  : local_port > 0                         ? Stage::kTlsHandshake
                  : resolved > 0 || IsIpLiteral(url->host) ? Stage::kConnect
                                                           : Stage::kResolve;
    return fail(Describe(facts));
  }
  long status = 0;  // NOLINT(runtime/int): libcurl's type
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  ex.status = static_cast<int>(status);
  ex.body = reply.kept();
  return ex;
}

}  // namespace gm::exporter
