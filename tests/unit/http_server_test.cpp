#include "http_server.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

#include "gm/unique_fd.h"
#include "http_protocol.h"

using namespace gm::exporter;
using namespace std::chrono_literals;

namespace {

// Runs a server on a fresh unix socket for the length of a test.
struct Running {
  std::string path = "/tmp/gm-http-test-" + std::to_string(getpid()) + ".sock";
  HttpServer server{{path, "127.0.0.1:0"},
                    [](const HttpRequest& r) -> HttpResponse {
                      if (r.path == "/hello") return {200, "text/plain", "hi " + r.method + "\n"};
                      return {404, "text/plain", "nope\n"};
                    },
                    nullptr};
  std::thread t{[this] { server.Run(); }};
  ~Running() {
    server.Stop();
    t.join();
  }
};

// Writes raw bytes on one connection and reads until the peer closes or `want` bytes arrived.
std::string Exchange(const std::string& path, const std::string& raw, size_t want = SIZE_MAX) {
  const gm::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  REQUIRE(connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
  timeval tv{2, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  REQUIRE(write(fd.get(), raw.data(), raw.size()) == static_cast<ssize_t>(raw.size()));
  std::string out;
  char buf[4096];
  while (out.size() < want) {
    const ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

size_t Count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (auto p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("GET over the unix socket, with the probe client") {
  Running r;
  std::string body, error;
  CHECK(HttpGetUnix(r.path, "/hello?x=1", 2000ms, body, error) == 200);
  CHECK(body == "hi GET\n");
  CHECK(HttpGetUnix(r.path, "/missing", 2000ms, body, error) == 404);
  CHECK(HttpGetUnix("/tmp/gm-no-such.sock", "/", 500ms, body, error) == -1);
  CHECK(error.find("cannot connect") != std::string::npos);
  CHECK(r.server.tcp_port() > 0);
}

TEST_CASE("keep-alive and pipelining answer every request in order on one connection") {
  Running r;
  const std::string req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
  const auto out = Exchange(r.path, req + req + "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK(Count(out, "HTTP/1.1 200 OK") == 3);
  CHECK(Count(out, "hi GET\n") == 3);
  CHECK(Count(out, "Connection: close") == 1);
}

TEST_CASE("bad requests get a clear 4xx") {
  Running r;
  CHECK(Exchange(r.path, "POST /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .find("400 Bad Request") != std::string::npos);
  CHECK(Exchange(r.path, "DELETE /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
            .find("405 Method Not Allowed") != std::string::npos);
  CHECK(Exchange(r.path, "garbage\r\n\r\n").find("400 Bad Request") != std::string::npos);
  CHECK(Exchange(r.path, "GET /" + std::string(20000, 'a')).find("431") != std::string::npos);
  const auto head = Exchange(r.path, "HEAD /hello HTTP/1.0\r\n\r\n");
  CHECK(head.find("Content-Length: 8") != std::string::npos);
  CHECK(head.find("hi") == std::string::npos);
}

TEST_CASE(
    "a session answers pipelined requests one at a time and reads nothing while a response is "
    "unsent") {
  const HttpHandler handler = [](const HttpRequest& r) -> HttpResponse {
    return {200, "text/plain", r.path + "\n"};
  };
  HttpSession s(handler);
  const std::string req = "GET /a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(s.wanted() == kMaxRequestHeaderBytes);
  s.Feed(req + req.substr(0, 10));  // one whole request and the start of the next
  REQUIRE(s.response_ready());
  CHECK(s.response().find("\r\n\r\n/a\n") !=
        std::string::npos);  // the query is not part of the path
  CHECK(s.wanted() == 0);    // a client that does not read is not read from
  s.ResponseSent();
  CHECK_FALSE(s.response_ready());
  CHECK(s.mid_request());  // the next request's deadline runs
  s.Feed(req.substr(10));
  CHECK(s.response_ready());
  s.ResponseSent();
  CHECK_FALSE(s.mid_request());
  CHECK_FALSE(s.closing());
}

TEST_CASE("a session refuses bodies, oversized heads and other methods with a clear status") {
  const HttpHandler handler = [](const HttpRequest&) -> HttpResponse {
    return {200, "text/plain", "ok\n"};
  };
  auto answer = [&](const std::string& in) {
    HttpSession s(handler);
    s.Feed(in.substr(0, s.wanted()));
    return std::make_pair(s.response(), s.closing());
  };
  auto [body, body_closes] = answer("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(body.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(body.find("request bodies are not accepted") != std::string::npos);
  CHECK(body_closes);
  CHECK(answer("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .first.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(answer("GET /" + std::string(9000, 'a')).first.rfind("HTTP/1.1 431", 0) == 0);
  auto [del, del_closes] = answer("DELETE / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(del.rfind("HTTP/1.1 405", 0) == 0);
  CHECK_FALSE(del_closes);  // a well-formed request: the connection stays usable
  CHECK(answer("GET / HTTP/1.0\r\n\r\n").second);  // HTTP/1.0 without keep-alive closes
}
