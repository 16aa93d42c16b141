// The exporter's HTTP request handling (http_protocol.h) is what any local
// process or, with TCP on, any peer reaches first. Bytes arrive in chunks of
// fuzzer-chosen sizes, as reads would deliver them; whatever they are, the
// session must answer with well-formed responses, one at a time, never hold
// more than the header limit, and stop taking input once it closes.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http_protocol.h"

namespace {

using gm::exporter::HttpRequest;
using gm::exporter::HttpResponse;

const gm::exporter::HttpHandler kHandler = [](const HttpRequest& r) -> HttpResponse {
  if (r.path.find('?') != std::string::npos) std::abort();  // the query is never part of the path
  if (r.method != "GET" && r.method != "HEAD")
    std::abort();  // others are refused before the handler
  if (r.path == "/metrics") return {200, "text/plain; version=0.0.4", std::string(3000, 'm')};
  return {404, "text/plain", "not found\n"};
};

void CheckResponse(const std::string& out) {
  if (out.rfind("HTTP/1.1 ", 0) != 0) std::abort();
  const auto end = out.find("\r\n\r\n");
  if (end == std::string::npos) std::abort();
  const auto cl = out.find("\r\nContent-Length: ");
  if (cl == std::string::npos || cl > end) std::abort();
  if (out.size() > end + 4 + 3000) std::abort();  // one response, not a backlog of them
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the read sizes: 1..64 bytes per read.
  const size_t chunk = static_cast<size_t>(data[0] % 64) + 1;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  gm::exporter::HttpSession session(kHandler);
  size_t responses = 0;
  while (true) {
    while (session.response_ready()) {
      CheckResponse(session.response());
      if (++responses > size) std::abort();  // every response needs bytes of its own
      session.ResponseSent();
    }
    if (session.closing()) {
      if (session.wanted() != 0) std::abort();  // nothing is read after the end
      break;
    }
    const size_t want = session.wanted();
    if (want == 0 || want > gm::exporter::kMaxRequestHeaderBytes)
      std::abort();  // idle yet refusing input
    if (in.empty()) break;
    const size_t n = std::min({chunk, want, in.size()});
    session.Feed(in.substr(0, n));
    in.remove_prefix(n);
  }
  return 0;
}
