#include "https_client.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "gm/build_info.h"
#include "https_wire.h"

namespace gm::exporter {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

// Several addresses may answer for one name (IPv6 and IPv4 for "localhost"):
// a black-holed first one must leave time for the next.
constexpr milliseconds kMaxConnectPerAddress{3000};
constexpr size_t kMaxResponseBytes = 1 << 20;  // a reporter's answer is tiny; stop reading a flood

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

std::string AddressText(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (a.addr.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&a.addr);
    inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
    port = ntohs(s6->sin6_port);
    return "[" + std::string(buf) + "]:" + std::to_string(port);
  }
  const auto* s4 = reinterpret_cast<const sockaddr_in*>(&a.addr);
  inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof buf);
  port = ntohs(s4->sin_port);
  return std::string(buf) + ":" + std::to_string(port);
}

int MillisLeft(steady_clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// Waits until `fd` is ready for `events` or `deadline` passes (false).
bool WaitFd(int fd, short events, steady_clock::time_point deadline) {
  for (;;) {
    const int ms = MillisLeft(deadline);
    if (ms <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = poll(&p, 1, ms);
    if (rc > 0) return true;  // ready, or an error the next call reports
    if (rc < 0 && errno != EINTR) return true;
  }
}

struct Lookup {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int rc = 0;
  std::vector<Address> addresses;
};

std::vector<Address> ToAddresses(const addrinfo* res) {
  std::vector<Address> out;
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address a;
    std::memcpy(&a.addr, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    out.push_back(a);
  }
  return out;
}

// getaddrinfo() has no deadline of its own (it follows resolv.conf's timeouts
// and search list), so a name is resolved on a short-lived thread and waited
// for with the POST's deadline. A lookup that outlives it finishes and frees
// itself. IP literals never start a thread.
std::vector<Address> Resolve(const HttpsUrl& url, steady_clock::time_point deadline,
                             std::string& error) {
  const std::string service = std::to_string(url.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (IsIpLiteral(url.host)) {
    hints.ai_flags |= AI_NUMERICHOST;
    addrinfo* res = nullptr;
    if (const int rc = getaddrinfo(url.host.c_str(), service.c_str(), &hints, &res); rc != 0) {
      error = "cannot use address " + url.host + ": " + gai_strerror(rc);
      return {};
    }
    auto out = ToAddresses(res);
    freeaddrinfo(res);
    return out;
  }
  hints.ai_flags |= AI_ADDRCONFIG;
  auto lookup = std::make_shared<Lookup>();
  try {
    std::thread([lookup, host = url.host, service, hints] {
      addrinfo* res = nullptr;
      const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
      std::vector<Address> out = rc == 0 ? ToAddresses(res) : std::vector<Address>{};
      if (res != nullptr) freeaddrinfo(res);
      {
        std::lock_guard lock(lookup->mu);
        lookup->rc = rc;
        lookup->addresses = std::move(out);
        lookup->done = true;
      }
      lookup->cv.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    error = "cannot resolve " + url.host + ": " + e.what();
    return {};
  }
  std::unique_lock lock(lookup->mu);
  if (!lookup->cv.wait_until(lock, deadline, [&] { return lookup->done; })) {
    error = "cannot resolve " + url.host + ": no answer before the deadline";
    return {};
  }
  if (lookup->rc != 0) {
    error = "cannot resolve " + url.host + ": " + gai_strerror(lookup->rc);
    return {};
  }
  if (lookup->addresses.empty()) error = "cannot resolve " + url.host + ": no address";
  return std::move(lookup->addresses);
}

class Fd {
 public:
  Fd() = default;
  ~Fd() { Reset(-1); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Tries each address in turn; leaves a connected non-blocking socket in `fd`.
bool Connect(const std::vector<Address>& addresses, steady_clock::time_point deadline, Fd& fd,
             std::string& error) {
  for (const auto& a : addresses) {
    const std::string where = AddressText(a);
    const int s = socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
      error = "socket for " + where + ": " + std::strerror(errno);
      continue;
    }
    fd.Reset(s);
    if (connect(s, reinterpret_cast<const sockaddr*>(&a.addr), a.len) == 0) return true;
    if (errno != EINPROGRESS) {
      error = "connect to " + where + ": " + std::strerror(errno);
      continue;
    }
    const auto until = std::min(deadline, steady_clock::now() + kMaxConnectPerAddress);
    if (!WaitFd(s, POLLOUT, until)) {
      error =
          "connect to " + where + ": no answer within " +
          std::to_string(std::chrono::duration_cast<milliseconds>(kMaxConnectPerAddress).count()) +
          " ms or before the deadline";
      if (steady_clock::now() >= deadline) break;
      continue;
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error == 0) return true;
    error = "connect to " + where + ": " + std::strerror(so_error);
  }
  fd.Reset(-1);
  return false;
}

struct CredentialsDeleter {
  void operator()(gnutls_certificate_credentials_st* c) const {
    gnutls_certificate_free_credentials(c);
  }
};
using Credentials = std::unique_ptr<gnutls_certificate_credentials_st, CredentialsDeleter>;
struct SessionDeleter {
  void operator()(gnutls_session_int* s) const { gnutls_deinit(s); }
};
using Session = std::unique_ptr<gnutls_session_int, SessionDeleter>;

// Built per POST: trust is re-read (a rotated CA file takes effect without a
// restart) and nothing stays in memory between reports.
Credentials LoadTrust(const TlsTrust& trust, std::string& error) {
  gnutls_certificate_credentials_t raw = nullptr;
  if (const int rc = gnutls_certificate_allocate_credentials(&raw); rc < 0) {
    error = std::string("TLS credentials: ") + gnutls_strerror(rc);
    return nullptr;
  }
  Credentials cred(raw);
  int n = 0;
  std::string source;
  if (!trust.ca_pem.empty()) {
    source = "the inline CA PEM";
    gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(trust.ca_pem.data())),
                     static_cast<unsigned>(trust.ca_pem.size())};
    n = gnutls_certificate_set_x509_trust_mem(raw, &d, GNUTLS_X509_FMT_PEM);
  } else if (!trust.ca_file.empty()) {
    source = "CA file " + trust.ca_file;
    n = gnutls_certificate_set_x509_trust_file(raw, trust.ca_file.c_str(), GNUTLS_X509_FMT_PEM);
  } else {
    source = "the system trust store";
    n = gnutls_certificate_set_x509_system_trust(raw);
  }
  if (n < 0) {
    error = "cannot load " + source + ": " + gnutls_strerror(n);
    return nullptr;
  }
  if (n == 0) {
    error = "no CA certificate in " + source;
    return nullptr;
  }
  return cred;
}

std::string VerifyError(gnutls_session_t s) {
  const unsigned status = gnutls_session_get_verify_cert_status(s);
  gnutls_datum_t out{};
  if (status == 0 ||
      gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) < 0) {
    return "server certificate rejected";
  }
  std::string text(reinterpret_cast<const char*>(out.data), out.size);
  gnutls_free(out.data);
  return "server certificate rejected: " + text;
}

}  // namespace

int CountPemCertificates(const std::string& pem, std::string& error) {
  gnutls_x509_crt_t* list = nullptr;
  unsigned count = 0;
  gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(pem.data())),
                   static_cast<unsigned>(pem.size())};
  const int rc = gnutls_x509_crt_list_import2(&list, &count, &d, GNUTLS_X509_FMT_PEM, 0);
  if (rc < 0) {
    error = gnutls_strerror(rc);
    return -1;
  }
  for (unsigned i = 0; i < count; ++i) gnutls_x509_crt_deinit(list[i]);
  gnutls_free(list);
  if (count == 0) {
    error = "no certificate found";
    return -1;
  }
  return static_cast<int>(count);
}

HttpExchange GnuTlsTransport::Post(const std::string& url_text,
                                   const std::vector<std::string>& headers, const std::string& body,
                                   milliseconds timeout) {
  const auto deadline = steady_clock::now() + timeout;
  HttpExchange ex;
  const auto fail = [&](std::string error) {
    ex.status = 0;
    ex.error = std::move(error);
    return ex;
  };
  std::string error;
  const auto url = ParseHttpsUrl(url_text, error);
  if (!url) return fail(error);
  const Credentials cred = LoadTrust(trust_, error);
  if (!cred) return fail(error);
  const auto addresses = Resolve(*url, deadline, error);
  if (addresses.empty()) return fail(error);
  Fd fd;
  if (!Connect(addresses, deadline, fd, error)) return fail(error);
  const std::string peer = url->HostHeader();
  const std::string budget = " within " + std::to_string(timeout.count()) + " ms";

  gnutls_session_t raw = nullptr;
  if (const int rc = gnutls_init(&raw, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
      rc < 0) {
    return fail(std::string("TLS session: ") + gnutls_strerror(rc));
  }
  const Session session(raw);
  gnutls_set_default_priority(raw);
  gnutls_credentials_set(raw, GNUTLS_CRD_CERTIFICATE, cred.get());
  // SNI carries DNS names only (RFC 6066); the verification below matches IP
  // literals against the certificate's IP addresses instead.
  if (!IsIpLiteral(url->host))
    gnutls_server_name_set(raw, GNUTLS_NAME_DNS, url->host.data(), url->host.size());
  gnutls_session_set_verify_cert(raw, url->host.c_str(), 0);
  gnutls_transport_set_int(raw, fd.get());

  for (;;) {
    const int rc = gnutls_handshake(raw);
    if (rc == GNUTLS_E_SUCCESS) break;
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
      if (!WaitFd(fd.get(), gnutls_record_get_direction(raw) ? POLLOUT : POLLIN, deadline)) {
        return fail("TLS handshake with " + peer + ": no answer" + budget);
      }
      continue;
    }
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)
      return fail("TLS handshake with " + peer + ": " + VerifyError(raw));
    if (gnutls_error_is_fatal(rc) || steady_clock::now() >= deadline)
      return fail("TLS handshake with " + peer + ": " + gnutls_strerror(rc));
  }

  std::string request = "POST " + url->target + " HTTP/1.1\r\nHost: " + peer +
                        "\r\nUser-Agent: guest-exporter/" + gm::kVersion +
                        "\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\nConnection: close\r\n";
  for (const auto& h : headers) request += h + "\r\n";
  request += "\r\n";
  request += body;
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = gnutls_record_send(raw, request.data() + sent, request.size() - sent);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
      if (!WaitFd(fd.get(), POLLOUT, deadline))
        return fail("sending to " + peer + ": blocked" + budget);
    } else {
      return fail("sending to " + peer + ": " + gnutls_strerror(static_cast<int>(n)));
    }
  }

  HttpResponseParser parser;
  size_t received = 0;
  char buf[4096];
  while (parser.state() == HttpResponseParser::State::kIncomplete) {
    const ssize_t n = gnutls_record_recv(raw, buf, sizeof buf);
    if (n > 0) {
      parser.Feed(buf, static_cast<size_t>(n));
      received += static_cast<size_t>(n);
      if (received > kMaxResponseBytes) return fail("response from " + peer + " larger than 1 MiB");
    } else if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) {
      // A close without close_notify only matters for a close-delimited body,
      // and that body is at most an error message to log.
      parser.Finish();
    } else if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
      if (!WaitFd(fd.get(), POLLIN, deadline)) return fail("no response from " + peer + budget);
    } else if (gnutls_error_is_fatal(static_cast<int>(n)) || steady_clock::now() >= deadline) {
      return fail("receiving from " + peer + ": " + gnutls_strerror(static_cast<int>(n)));
    }
  }
  if (parser.state() == HttpResponseParser::State::kError)
    return fail("response from " + peer + ": " + parser.error());
  // One polite close_notify; the socket closes right after, whatever the answer.
  gnutls_bye(raw, GNUTLS_SHUT_WR);
  ex.status = parser.status();
  ex.body = parser.body();
  return ex;
}

}  // namespace gm::exporter
