// guest-exporter's HTTP server under abusive clients, checked the way an
// operator would: the sidecar's memory, its CPU time, and whether the unix
// socket (what `kubectl exec … guest-exporter probe` and local tools use)
// still answers. Flags new with these limits are given as environment
// variables, so that a build without them runs the same test and fails on
// what it measures rather than on an unknown flag.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <thread>
#include <utility>

#include "http_server.h"
#include "support.h"

using namespace gm::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Exporter {
  TempDir dir;
  std::string sock = dir.path + "/m.sock";
  int port = FreeTcpPort();
  std::unique_ptr<Process> proc;
  explicit Exporter(const std::map<std::string, std::string>& env = {},
                    std::vector<std::string> wrapper = {}) {
    std::vector<std::string> argv = std::move(wrapper);
    for (const char* a : {GUEST_EXPORTER_BIN, "--libvirt-uri", "test:///default", "--socket",
                          sock.c_str(), "--node-name", "n1", "--guest-info-interval", "60"}) {
      argv.emplace_back(a);
    }
    argv.emplace_back("--listen-address");
    argv.push_back("127.0.0.1:" + std::to_string(port));
    proc = std::make_unique<Process>(argv, env, dir.path + "/exporter.log");
    REQUIRE(WaitUntil([&] { return Healthy(2s); }, 10s));
  }
  // The health check a human or a tool runs on the unix socket.
  bool Healthy(std::chrono::milliseconds timeout) const {
    std::string body, error;
    return gm::exporter::HttpGetUnix(sock, "/healthz", timeout, body, error) == 200;
  }
};

// A sample of the exporter's /metrics read over its unix socket, as an
// operator would; -1 when the series is absent. The page is cached for up to
// 0.5 s, so callers wait for the value they expect.
double Counter(const Exporter& e, const std::string& series) {
  bool ok = false;
  const std::string body = Get(e.sock, "/metrics", &ok);
  if (!ok) return -1;
  return Sample(body, series).value_or(-1);
}

bool PeerClosed(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) == 0 || (p.revents & (POLLHUP | POLLERR)) != 0;
}

}  // namespace

TEST_CASE("a client that pipelines GETs and never reads costs at most a response, not memory") {
  Exporter e;
  // The baseline after start-up's own allocations (the first poll, the first
  // page): under ASan they alone came near the bound once.
  bool ok = false;
  static_cast<void>(Get(e.sock, "/metrics", &ok));
  REQUIRE(ok);
  std::this_thread::sleep_for(500ms);
  const long rss0 = StatusKib(e.proc->pid(), "VmRSS");
  const gm::UniqueFd fd = ConnectUnix(e.sock);
  REQUIRE(fd);
  fcntl(fd.get(), F_SETFL, O_NONBLOCK);
  std::string reqs;
  for (int i = 0; i < 1024; ++i) reqs += "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  // Up to 4 MiB of requests, for as long as the exporter takes them.
  size_t sent = 0;
  auto last_progress = Clock::now();
  while (sent < (4u << 20) && Clock::now() - last_progress < 2s) {
    const ssize_t n = send(fd.get(), reqs.data() + sent % reqs.size(),
                           reqs.size() - sent % reqs.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      last_progress = Clock::now();
    } else {
      std::this_thread::sleep_for(10ms);
    }
  }
  std::this_thread::sleep_for(500ms);  // let it process what it took
  const long rss = StatusKib(e.proc->pid(), "VmRSS");
  MESSAGE("requests taken: " << sent << " bytes; VmRSS " << rss0 << " KiB before, " << rss
                             << " KiB after");
  CHECK(rss - rss0 < 8 * 1024);  // the bug: 525 MB for 4 MiB of requests
  CHECK(e.Healthy(2s));
}

TEST_CASE(
    "260 TCP clients trickling bytes cannot starve the unix socket, and each is cut at the request "
    "deadline") {
  // A TCP budget of 256, which 260 clients overfill: the unix socket must not care.
  Exporter e(
      std::map<std::string, std::string>{{"GUEST_EXPORTER_HTTP_REQUEST_TIMEOUT", "3"},
                                         {"GUEST_EXPORTER_HTTP_MAX_TCP_CONNECTIONS", "256"}});
  std::vector<gm::UniqueFd> fds;
  for (int i = 0; i < 260; ++i) {
    if (gm::UniqueFd fd = ConnectTcp(e.port)) fds.push_back(std::move(fd));
  }
  REQUIRE(fds.size() == 260);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<size_t> pos(fds.size(), 0);
  std::vector<bool> open(fds.size(), true);
  int health_failures = 0, health_checks = 0;
  std::chrono::milliseconds slowest{0};
  const auto start = Clock::now();
  // A byte from every client every 500 ms: each byte reset the old idle timer.
  while (Clock::now() - start < 6s) {
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!open[i]) continue;
      if (PeerClosed(fds[i].get())) {
        open[i] = false;
        continue;
      }
      if (pos[i] < req.size() - 1 &&
          send(fds[i].get(), &req[pos[i]], 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
        ++pos[i];
    }
    const auto t0 = Clock::now();
    ++health_checks;
    if (!e.Healthy(2s)) ++health_failures;
    slowest =
        std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0));
    std::this_thread::sleep_for(500ms);
  }
  size_t still_open = 0;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (open[i] && !PeerClosed(fds[i].get())) ++still_open;
  }
  fds.clear();
  MESSAGE("unix health checks: " << health_checks << ", failed " << health_failures << ", slowest "
                                 << slowest.count()
                                 << " ms; trickling TCP clients still open after 6 s: "
                                 << still_open);
  CHECK(health_failures == 0);
  CHECK(slowest < 1000ms);
  // A 3 s deadline for the whole request: none of them may hold a slot after 6 s.
  CHECK(still_open == 0);
  // What an SRE sees: the 4 over the budget refused, the rest cut at the
  // deadline (a refused client does not reconnect here), nothing on the unix socket.
  const std::string tcp = "{listener=\"tcp\"}";
  CHECK(WaitUntil(
      [&] { return Counter(e, "guest_exporter_http_connections_refused_total" + tcp) >= 4; }, 3s));
  CHECK(WaitUntil(
      [&] {
        return Counter(e,
                       "guest_exporter_http_connections_timed_out_total{listener=\"tcp\","
                       "timeout=\"request\"}") >= 256;
      },
      3s));
  CHECK(Counter(e, "guest_exporter_http_connections_refused_total{listener=\"unix\"}") == 0);
  MESSAGE("refused: " << Counter(e, "guest_exporter_http_connections_refused_total" + tcp)
                      << ", cut at the request deadline: "
                      << Counter(e,
                                 "guest_exporter_http_connections_timed_out_total{listener="
                                 "\"tcp\",timeout=\"request\"}"));
}

TEST_CASE("a byte-a-second client cannot extend the request deadline") {
  Exporter e(std::map<std::string, std::string>{{"GUEST_EXPORTER_HTTP_REQUEST_TIMEOUT", "2"}});
  gm::UniqueFd fd = ConnectUnix(e.sock);
  REQUIRE(fd);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n";
  const auto t0 = Clock::now();
  bool closed = false;
  for (size_t i = 0; i < req.size() && !closed; ++i) {
    if (send(fd.get(), &req[i], 1, MSG_NOSIGNAL) != 1) break;
    for (int k = 0; k < 10 && !closed; ++k) {
      std::this_thread::sleep_for(50ms);
      closed = PeerClosed(fd.get());
    }
    if (Clock::now() - t0 > 10s) break;
  }
  const auto held = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  MESSAGE("connection closed: " << closed << " after " << held.count() << " ms");
  CHECK(closed);
  CHECK(held < 6s);  // 2 s deadline; the old idle timer let it last as long as the client liked
  fd.Reset();
  CHECK(WaitUntil(
      [&] {
        return Counter(e,
                       "guest_exporter_http_connections_timed_out_total{listener=\"unix\","
                       "timeout=\"request\"}") == 1;
      },
      3s));
  CHECK(Counter(e,
                "guest_exporter_http_connections_timed_out_total{listener=\"unix\","
                "timeout=\"idle\"}") == 0);
}

TEST_CASE("a kept-alive connection left idle is closed at the idle timeout, and counted") {
  Exporter e(std::map<std::string, std::string>{{"GUEST_EXPORTER_HTTP_IDLE_TIMEOUT", "1"}});
  gm::UniqueFd fd = ConnectTcp(e.port);
  REQUIRE(fd);
  const std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  char buf[512];
  REQUIRE(recv(fd.get(), buf, sizeof buf, 0) > 0);  // the answer; the connection stays open
  CHECK(WaitUntil([&] { return PeerClosed(fd.get()); }, 5s));
  fd.Reset();
  CHECK(WaitUntil(
      [&] {
        return Counter(e,
                       "guest_exporter_http_connections_timed_out_total{listener=\"tcp\","
                       "timeout=\"idle\"}") == 1;
      },
      3s));
  CHECK(Counter(e,
                "guest_exporter_http_connections_timed_out_total{listener=\"tcp\","
                "timeout=\"request\"}") == 0);
}

TEST_CASE(
    "out of file descriptors, the exporter pauses accepting instead of spinning, and recovers") {
  // 64 descriptors: a few for libvirt, logs and listeners, the rest for clients.
  Exporter e({}, {"/usr/bin/prlimit", "--nofile=64:64", "--"});
  std::vector<gm::UniqueFd> fds;
  for (int i = 0; i < 120; ++i) {
    gm::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(static_cast<uint16_t>(e.port));
    // The backlog takes them all.
    const bool started = connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0 ||
                         errno == EINPROGRESS;
    CHECK(started);
    fds.push_back(std::move(fd));
  }
  std::this_thread::sleep_for(1s);
  const double cpu0 = CpuSeconds(e.proc->pid());
  std::this_thread::sleep_for(3s);
  const double cpu = CpuSeconds(e.proc->pid()) - cpu0;
  MESSAGE("CPU time over 3 s with the descriptors exhausted: " << cpu << " s");
  CHECK(cpu < 0.5);  // the bug: a core (about 3 s)
  const auto log = [&e] {
    std::ifstream in(e.dir.path + "/exporter.log");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  // Seen once in a full run on a loaded machine, not reproduced since: say why.
  if (!e.proc->Running())
    FAIL_CHECK("the exporter exited, status " << e.proc->Wait(0ms) << "; its log:\n" << log());
  fds.clear();  // close them all: the exporter must accept again
  CHECK(WaitUntil([&] { return e.Healthy(2s); }, 10s));
  CHECK(log().find("descriptors") != std::string::npos);
  CHECK(Counter(e, "guest_exporter_http_accept_pauses_total{listener=\"tcp\"}") >= 1);
}
