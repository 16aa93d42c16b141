// The HTTP server has no periodic tick: these check the two things the tick
// used to do still happen, each woken by its own cause.

#include <doctest/doctest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "gm/unique_fd.h"
#include "http_server.h"

using namespace gm::exporter;
using namespace std::chrono_literals;

namespace {

gm::UniqueFd ConnectUnix(const std::string& path) {
  gm::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  REQUIRE(connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

}  // namespace

TEST_CASE(
    "an idle keep-alive connection is closed after idle_timeout, and a readable tick fd runs the "
    "tick") {
  const std::string path = "/tmp/gm-http-wake-test-" + std::to_string(getpid()) + ".sock";
  const gm::UniqueFd tick_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  REQUIRE(tick_fd);
  std::atomic<int> ticks{0};
  HttpServerOptions options{path, ""};
  options.idle_timeout = 1s;
  options.tick_fd = tick_fd.get();
  HttpServer server(
      options,
      [](const HttpRequest&) -> HttpResponse {
        return {200, "text/plain", "ok\n"};
      },
      [&] {
        uint64_t v = 0;
        [[maybe_unused]] const auto n = read(tick_fd.get(), &v, sizeof v);
        ++ticks;
      });
  std::thread t([&] { server.Run(); });

  gm::UniqueFd fd = ConnectUnix(path);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(write(fd.get(), req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  char buf[512];
  REQUIRE(read(fd.get(), buf, sizeof buf) > 0);  // the answer; the connection stays open
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(read(fd.get(), buf, sizeof buf) == 0);  // then the server closes it, idle
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= 900ms);
  CHECK(waited < 3s);
  fd.Reset();

  CHECK(ticks == 0);  // nothing ran the tick by itself
  const uint64_t one = 1;
  REQUIRE(write(tick_fd.get(), &one, sizeof one) == sizeof one);
  for (int i = 0; i < 200 && ticks == 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(ticks == 1);

  server.Stop();
  t.join();
}
