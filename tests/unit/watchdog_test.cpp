// The in-process watchdog: its decisions on an injected clock, and once for
// real against the HTTP server's thread.

#include "watchdog.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <thread>

#include "gm/unique_fd.h"
#include "http_server.h"

using namespace gm::exporter;
using namespace std::chrono_literals;

TEST_CASE("the watchdog names the first thread stuck beyond its bound, and nothing below it") {
  WatchdogClock::time_point now{1000s};
  WatchdogClock::duration poller_busy{0};
  Watchdog w(
      {{"serving thread", 60s,
        [](WatchdogClock::time_point) { return WatchdogClock::duration::zero(); }, nullptr},
       {"polling thread", 240s, [&](WatchdogClock::time_point) { return poller_busy; }, nullptr}},
      30s, [](const StuckThread&) {}, [&] { return now; });
  CHECK_FALSE(w.Check());
  poller_busy = 239s;  // a slow libvirt call, within its bound
  CHECK_FALSE(w.Check());
  poller_busy = 241s;
  const auto stuck = w.Check();
  REQUIRE(stuck);
  CHECK(stuck->name == "polling thread");
  CHECK(stuck->stuck_for == 241s);
  CHECK(stuck->bound == 240s);
}

TEST_CASE(
    "a ping heartbeat: unanswered pings age, an answer resets, one ping in flight at a time") {
  std::vector<std::function<void()>> posted;
  PingHeartbeat hb([&](std::function<void()> f) { posted.push_back(std::move(f)); });
  WatchdogClock::time_point t0{500s};
  CHECK(hb.StuckFor(t0) == 0s);  // never pinged: idle, not stuck
  hb.Ping(t0);
  REQUIRE(posted.size() == 1);
  CHECK(hb.StuckFor(t0 + 10s) == 10s);
  hb.Ping(t0 + 30s);  // still unanswered: no second ping, the age keeps growing
  CHECK(posted.size() == 1);
  CHECK(hb.StuckFor(t0 + 70s) == 70s);
  posted[0]();  // the thread got to it
  CHECK(hb.StuckFor(t0 + 71s) == 0s);
  hb.Ping(t0 + 90s);
  CHECK(posted.size() == 2);
}

TEST_CASE("the watchdog fires when the HTTP server's thread is blocked, and not while it idles") {
  const std::string path = "/tmp/gm-watchdog-test-" + std::to_string(getpid()) + ".sock";
  HttpServer server(
      {path, ""},
      [](const HttpRequest& r) -> HttpResponse {
        if (r.path == "/block") std::this_thread::sleep_for(1500ms);  // a stuck handler
        return {200, "text/plain", "ok\n"};
      },
      nullptr);
  std::thread t([&] { server.Run(); });
  PingHeartbeat hb([&](std::function<void()> f) { server.Ping(std::move(f)); });
  std::promise<StuckThread> fired;
  auto fired_future = fired.get_future();
  bool once = false;
  Watchdog w(
      {{"serving thread", 300ms, [&](WatchdogClock::time_point now) { return hb.StuckFor(now); },
        [&](WatchdogClock::time_point now) { hb.Ping(now); }}},
      50ms, [&](const StuckThread& s) {
        if (!once) fired.set_value(s);
        once = true;
      });
  w.Start();
  // Idle for 1 s: 20 rounds, every ping answered.
  CHECK(fired_future.wait_for(1s) == std::future_status::timeout);

  gm::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  REQUIRE(connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
  const std::string req = "GET /block HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(write(fd.get(), req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  REQUIRE(fired_future.wait_for(5s) == std::future_status::ready);
  const auto stuck = fired_future.get();
  CHECK(stuck.name == "serving thread");
  CHECK(stuck.stuck_for > 300ms);
  w.Stop();
  fd.Reset();
  server.Stop();
  t.join();
}
