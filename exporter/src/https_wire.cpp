#include "https_wire.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <vector>

#include "gm/logging.h"

namespace gm::exporter {

namespace {

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string HttpsUrl::HostHeader() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  if (port != 443) h += ":" + std::to_string(port);
  return h;
}

std::optional<HttpsUrl> ParseHttpsUrl(const std::string& url, std::string& error) {
  const auto fail = [&](const std::string& why) -> std::optional<HttpsUrl> {
    error = "invalid URL '" + url + "': " + why;
    return std::nullopt;
  };
  constexpr const char* kScheme = "https://";
  if (url.size() < 8 || Lower(url.substr(0, 8)) != kScheme)
    return fail("only https:// is supported");
  std::string rest = url.substr(8);
  if (const auto hash = rest.find('#'); hash != std::string::npos) rest.resize(hash);
  for (char c : rest) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      return fail("it contains a space or a control character");
  }
  const auto path_at = rest.find_first_of("/?");
  std::string authority = rest.substr(0, path_at);
  HttpsUrl out;
  out.target = path_at == std::string::npos ? "/" : rest.substr(path_at);
  if (out.target[0] == '?') out.target.insert(0, "/");
  if (authority.find('@') != std::string::npos) return fail("user info is not supported");
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return fail("unterminated '[' in the host");
    out.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return fail("unexpected text after ']'");
      port_text = after.substr(1);
      if (port_text.empty()) return fail("empty port");
    }
    in6_addr a6{};
    if (inet_pton(AF_INET6, out.host.c_str(), &a6) != 1)
      return fail("'" + out.host + "' is not an IPv6 address");
  } else {
    const auto colon = authority.find(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return fail("empty port");
    }
  }
  if (out.host.empty()) return fail("no host");
  if (!port_text.empty()) {
    if (!AllDigits(port_text) || port_text.size() > 5)
      return fail("invalid port '" + port_text + "'");
    out.port = std::atoi(port_text.c_str());
    if (out.port < 1 || out.port > 65535) return fail("port " + port_text + " is out of range");
  }
  out.host =
      Lower(out.host);  // DNS names compare case-insensitively; certificates store them lower case
  return out;
}

// --- reply and failures ----------------------------------------------------

bool BoundedBody::Append(const char* data, size_t n) {
  total_ += n;
  if (kept_.size() < keep_) kept_.append(data, std::min(n, keep_ - kept_.size()));
  return total_ <= limit_;
}

std::string Describe(const Failure& f) {
  const std::string& peer = f.peer;
  const std::string budget = " within " + std::to_string(f.timeout.count()) + " ms";
  const std::string detail = f.detail.empty() ? "" : ": " + EscapeForLog(f.detail);
  switch (f.kind) {
    case Failure::Kind::kTimeout:
      switch (f.stage) {
        case Stage::kResolve:
          return "cannot resolve " + f.host + ": no answer" + budget;
        case Stage::kConnect:
          return "connect to " + peer + ": no answer" + budget;
        case Stage::kTlsHandshake:
          return "TLS handshake with " + peer + ": no answer" + budget;
        case Stage::kExchange:
          return "no response from " + peer + budget;
      }
      break;
    case Failure::Kind::kResolve:
      return "cannot resolve " + f.host + detail;
    case Failure::Kind::kConnect:
      return "connect to " + peer + detail;
    case Failure::Kind::kCertificate:
      return "TLS handshake with " + peer + ": server certificate rejected" + detail;
    case Failure::Kind::kTls:
      return "TLS handshake with " + peer + detail;
    case Failure::Kind::kTooLarge:
      return "response from " + peer + " larger than " + std::to_string(f.limit) + " bytes";
    case Failure::Kind::kOther:
      break;
  }
  return "POST to " + peer + " failed" + detail;
}

}  // namespace gm::exporter
