// guest-exporter: the sidecar that turns a VM's guest load into Prometheus gauges.

#include <libvirt/libvirt.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "exposition.h"
#include "flags.h"
#include "gm/build_info.h"
#include "gm/errno_text.h"
#include "gm/logging.h"
#include "gm/quantity.h"
#include "http_server.h"
#include "https_client.h"
#include "https_wire.h"
#include "load_cache.h"
#include "poller.h"
#include "report_client.h"
#include "watchdog.h"

namespace {

gm::exporter::HttpServer* g_server = nullptr;

void OnSignal(int) {
  if (g_server != nullptr) g_server->Stop();
}

std::string LibvirtVersion() {
  unsigned long v = 0;
  if (virGetVersion(&v, nullptr, nullptr) != 0) return "unknown";
  return std::to_string(v / 1000000) + "." + std::to_string(v / 1000 % 1000) + "." +
         std::to_string(v % 1000);
}

using gm::exporter::Options;

// An optional quantity flag, already checked by the flag parser: empty means not given.
std::optional<double> QuantityFlag(const std::string& flag, const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::string error;
  auto v = gm::ParseQuantity(text, error);
  if (!v) throw std::invalid_argument("--" + flag + ": " + error);
  return v;
}

// What a person who opens the exporter in a browser sees.
constexpr const char* kLandingPage =
    "<!DOCTYPE html><html><head><title>guest-exporter</title></head><body><h1>guest-exporter</h1>"
    "<p>Guest load of this host's VMs, for Prometheus.</p>"
    "<ul><li><a href=\"metrics\">/metrics</a></li><li><a href=\"healthz\">/healthz</a></li></ul>"
    "</body></html>\n";

// The unix socket's path, or "" (socket off) when its directory is missing
// and cannot be made: on a plain host /var/run/guest-exporter does not exist,
// and a user running the exporter by hand wants TCP to serve regardless.
// mkdir(2) rather than std::filesystem: this is the sidecar's only use of it,
// and its code in libstdc++ kept 128 KiB resident in every sidecar.
std::string UsableSocketPath(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return path;
  const std::string dir = path.substr(0, slash);
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return path;
  std::string error = "not a directory";
  for (size_t end = dir.find('/', 1);; end = dir.find('/', end + 1)) {
    const std::string part = dir.substr(0, end);
    if (mkdir(part.c_str(), 0777) != 0 && errno != EEXIST) {
      error = gm::ErrnoText(errno);
      break;
    }
    if (end == std::string::npos) {
      // Owner and group only: /metrics is readable by whoever may connect.
      if (stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && chmod(dir.c_str(), 0750) == 0) {
        spdlog::info("created the socket directory {} (mode 0750)", dir);
        return path;
      }
      break;
    }
  }
  spdlog::warn("unix socket off: cannot create its directory {}: {}", dir, error);
  return "";
}

// Each connection holds a descriptor: say at start when the limit is below
// the budgets (the server then pauses accepting on EMFILE rather than failing).
void WarnIfFewDescriptors(const gm::exporter::HttpServerOptions& h) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
  const rlim_t needed = h.max_tcp_connections + h.max_unix_connections + 64;
  if (rl.rlim_cur < needed) {
    spdlog::warn(
        "RLIMIT_NOFILE is {}, below the {} descriptors the connection budgets may use; accepts "
        "pause while "
        "descriptors run out",
        rl.rlim_cur, needed);
  }
}

// How long one libvirt call may legitimately block: a frozen daemon is
// dropped by keepalive interval x (count + 1) after its last message, and a
// live one answers a guest-agent call within the agent timeout plus libvirt's
// own 30 s wait for the domain's job lock. The polling thread's watchdog bound
// is twice this (240 s with the defaults), so it never fires on a slow but
// healthy libvirt, only on a call nothing will end (e.g. a connect to a daemon
// frozen before it answered: keepalive starts only once connected).
std::chrono::seconds LongestLegitimateCall(const Options& o) {
  const auto keepalive =
      std::chrono::seconds(o.keepalive_interval * (static_cast<int>(o.keepalive_count) + 1));
  return std::max(keepalive, std::chrono::seconds(o.agent_timeout + 30));
}

[[noreturn]] void ExitStuck(const gm::exporter::StuckThread& t) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  spdlog::critical(
      "watchdog: the {} has been stuck for {} s (bound {} s); exiting so that the container is "
      "restarted",
      t.name, duration_cast<seconds>(t.stuck_for).count(), duration_cast<seconds>(t.bound).count());
  spdlog::shutdown();  // flushes
  std::_Exit(70);      // no destructors: they would wait for the stuck thread
}

int Serve(const Options& o) {
  using namespace gm::exporter;
  gm::SetupLogging(o.log_format, o.log_level);
  std::string node = o.node;
  if (node.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    node = host;
  }
  gm::RatioInputs requests;
  requests.compute_cpu_request = QuantityFlag("cpu-request", o.cpu_request);
  requests.compute_memory_request = QuantityFlag("memory-request", o.memory_request);
  requests.memory_overhead = QuantityFlag("memory-overhead", o.memory_overhead);
  requests.vmi_memory_request = QuantityFlag("vmi-memory-request", o.vmi_memory_request);
  requests.cluster_memory_overcommit =
      QuantityFlag("cluster-memory-overcommit", o.cluster_memory_overcommit);
  const std::chrono::seconds interval(o.interval);
  const auto max_age = std::chrono::duration_cast<Clock::duration>(interval * o.max_age_factor);

  LoadCache cache(max_age);
  SelfMetrics metrics(LibvirtVersion());
  PollerConfig pc;
  pc.uri = o.libvirt_uri;
  pc.interval = interval;
  pc.agent_timeout_seconds = o.agent_timeout;
  pc.max_backoff = std::chrono::seconds(o.max_backoff);
  pc.keepalive_interval_seconds = o.keepalive_interval;
  pc.keepalive_count = o.keepalive_count;
  pc.call_deadline = std::chrono::seconds(o.call_deadline);
  if (!o.vmi_name.empty()) pc.identity = Identity{o.vmi_namespace, o.vmi_name};
  std::unique_ptr<HttpsReportSender> sender;
  std::unique_ptr<ReportLoop> reports;
  if (!o.reporter_url.empty()) {
    sender = std::make_unique<HttpsReportSender>(
        HttpsTarget{o.reporter_url, o.reporter_ca_file, o.reporter_ca_pem, o.token_file});
    reports = std::make_unique<ReportLoop>(
        ReportLoopConfig{node, {o.pod_name, o.pod_uid}, requests, interval}, *sender, cache,
        metrics);
    pc.on_change = [r = reports.get()] { r->Notify(); };
  }
  Poller poller(pc, cache, metrics);

  // A rendered page is reused for up to half a second while the cache is
  // unchanged: scrapers in a burst cost one render, not one each.
  std::string page;
  uint64_t page_generation = 0;
  Clock::time_point page_time{};
  const auto hang_deadline = std::chrono::seconds(o.call_deadline);
  HttpServerOptions http_options{UsableSocketPath(o.socket), o.listen_address};
  http_options.request_timeout = std::chrono::seconds(o.http_request_timeout);
  http_options.idle_timeout = std::chrono::seconds(o.http_idle_timeout);
  http_options.max_tcp_connections = o.http_max_tcp_connections;
  http_options.max_unix_connections = o.http_max_unix_connections;
  WarnIfFewDescriptors(http_options);
  // No periodic tick: the server thread wakes for a hung libvirt call only.
  http_options.tick_fd = poller.hang_timer_fd();
  HttpServer server(
      http_options,
      [&](const HttpRequest& req) -> HttpResponse {
        if (req.path == "/metrics") {
          const auto now = Clock::now();
          if (page.empty() || cache.generation() != page_generation ||
              now - page_time > std::chrono::milliseconds(500)) {
            poller.CheckHung(hang_deadline);
            page_generation = cache.generation();
            page = RenderMetrics(cache.Snapshot(now), node, interval, requests, metrics,
                                 server.stats());
            page_time = now;
          }
          return {200, "text/plain; version=0.0.4; charset=utf-8", page};
        }
        // Serving is all that health and readiness mean: the domain may not
        // exist yet. The injected sidecar has no probes (the watchdog restarts
        // it); these are for people, scripts and `guest-exporter probe`.
        if (req.path == "/healthz" || req.path == "/readyz")
          return {200, "text/plain; charset=utf-8", "ok\n"};
        if (req.path == "/") return {200, "text/html; charset=utf-8", kLandingPage};
        return {404, "text/plain; charset=utf-8", "not found; try /metrics, /healthz or /readyz\n"};
      },
      [&] { poller.OnHangTimer(); });
  g_server = &server;
  // signal() fails only for a signal number that does not exist.
  static_cast<void>(std::signal(SIGTERM, OnSignal));
  static_cast<void>(std::signal(SIGINT, OnSignal));
  static_cast<void>(std::signal(SIGPIPE, SIG_IGN));

  spdlog::info("guest-exporter {} ({}) libvirt {}: uri={} interval={}s socket={} listen={}",
               gm::kVersion, gm::kRevision, LibvirtVersion(), o.libvirt_uri, o.interval,
               http_options.unix_socket.empty() ? "off" : http_options.unix_socket,
               o.listen_address.empty()
                   ? "off"
                   : o.listen_address + " (port " + std::to_string(server.tcp_port()) + ")");
  // The watchdog. The serving thread answers a ping at once unless something
  // blocks it (it only ever serves from caches): 60 s is far beyond any
  // request. The polling thread is stuck when one libvirt call outlives
  // twice the longest a call can legitimately take.
  const auto safe = LongestLegitimateCall(o);
  const auto poller_bound =
      o.watchdog_timeout > 0 ? std::chrono::seconds(o.watchdog_timeout) : 2 * safe;
  if (poller_bound <= safe) {
    spdlog::warn(
        "--watchdog-timeout {} s is not above the {} s a libvirt call may legitimately take; a "
        "slow but "
        "healthy libvirt can trip it",
        poller_bound.count(), safe.count());
  }
  const auto serving_bound = std::min<std::chrono::seconds>(std::chrono::seconds(60), poller_bound);
  const auto period = std::clamp<std::chrono::seconds>(serving_bound / 2, std::chrono::seconds(1),
                                                       std::chrono::seconds(30));
  PingHeartbeat heartbeat([&server](std::function<void()> f) { server.Ping(std::move(f)); });
  Watchdog watchdog(
      {{"serving thread", serving_bound,
        [&](WatchdogClock::time_point now) { return heartbeat.StuckFor(now); },
        [&](WatchdogClock::time_point now) { heartbeat.Ping(now); }},
       {"polling thread (in a libvirt call)", poller_bound,
        [&](WatchdogClock::time_point now) { return poller.CallRunningFor(now); }, nullptr}},
      period, ExitStuck);
  spdlog::debug(
      "watchdog: serving thread bound {} s, polling thread bound {} s, checked every {} s",
      serving_bound.count(), poller_bound.count(), period.count());

  poller.Start();
  if (reports) reports->Start();
  watchdog.Start();
  server.Run();
  spdlog::info("shutting down");
  watchdog.Stop();  // the server no longer answers pings
  g_server = nullptr;
  poller.Stop();
  if (reports) reports->Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // One malloc arena for all threads: glibc gives each of the five threads
  // (server, libvirt events, polls, reports, watchdog) its own arena, whose
  // first pages stay resident in every sidecar (~150 KiB, docs/benchmarks.md),
  // while only the server thread allocates often and nothing contends.
  mallopt(M_ARENA_MAX, 1);  // NOLINT(concurrency-mt-unsafe): before any thread starts
  // Flags, --help, --version and `probe` are handled by guest-exporter-flags (flags.h).
  int exit_code = 0;
  const auto options = gm::exporter::ParseFlags(argc, argv, exit_code);
  if (!options) return exit_code;
  try {
    return Serve(*options);
  } catch (const std::exception& e) {
    static_cast<void>(std::fprintf(stderr, "guest-exporter: %s\n", e.what()));
    return 1;
  }
}
