#include "report_client.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

using namespace gm::exporter;
using namespace std::chrono_literals;

namespace {

// Records what was sent; fails while `fail` is set.
class FakeSender final : public ReportSender {
 public:
  std::vector<gm::Report> sent;
  bool fail = false;
  SendResult Send(const std::string& body) override {
    std::string err;
    auto r = gm::DecodeReport(body, err);
    REQUIRE_MESSAGE(r, err);  // what the sidecar sends, the reporter must accept
    if (fail) return {false, "HTTP 503", "http_503"};
    sent.push_back(*r);
    return {true, {}};
  }
};

const auto t0 = Clock::time_point{} + 10000s;

struct Fixture {
  LoadCache cache{300s};
  SelfMetrics metrics{"9.0.0"};
  FakeSender sender;
  gm::RatioInputs requests;
  std::unique_ptr<ReportLoop> loop;
  double jitter_factor = 1.0;  // no jitter: exact times below
  std::function<double()> jitter = [this] { return jitter_factor; };
  Fixture() {
    requests.compute_cpu_request = 0.2;
    requests.vmi_memory_request = 4.0 * 1073741824.0;
    loop = std::make_unique<ReportLoop>(
        ReportLoopConfig{
            "node-1", {"virt-launcher-vm-1-x", "uid-1"}, requests, 120s, 1000ms, 8000ms, jitter},
        sender, cache, metrics);
    cache.Observe({"team-a_vm-1", "u", 2, 6ULL * 1024 * 1024}, {"team-a", "vm-1"}, t0);
  }
  void Seen(Clock::time_point t) {
    cache.Observe({"team-a_vm-1", "u", 2, 6ULL * 1024 * 1024}, {"team-a", "vm-1"}, t);
  }
};

}  // namespace

TEST_CASE("the report carries identity, live allocation, load with its age, and both ratios") {
  DomainView d;
  d.domain = "team-a_vm-1";
  d.identity = {"team-a", "vm-1"};
  d.info = {"team-a_vm-1", "u", 2, 6ULL * 1024 * 1024};
  d.load = LoadAverage{3, 2, 1};
  d.reason = Reason::kOk;
  const auto wall = std::chrono::system_clock::time_point{} + 1700000000s;
  d.sample_wall_time = wall - 30s;
  gm::RatioInputs req;
  req.compute_cpu_request = 0.2;
  req.vmi_memory_request = 4.0 * 1073741824.0;
  const auto r = BuildReport(d, "node-1", {"pod", "uid"}, req, wall);
  CHECK(r.namespace_ == "team-a");
  CHECK(r.vmi_name == "vm-1");
  CHECK(r.pod_uid == "uid");
  CHECK(r.vcpus == 2);
  CHECK(r.memory_bytes == doctest::Approx(6442450944.0));
  REQUIRE(r.load);
  CHECK(r.load->age_seconds == doctest::Approx(30));
  CHECK(*r.cpu_allocation_ratio == doctest::Approx(10.0));
  CHECK(*r.memory_overcommit_ratio == doctest::Approx(1.5));
  CHECK(r.memory_request_source == "vmi-request");

  auto later = r;
  later.load->age_seconds = 90;
  CHECK_FALSE(ReportChanged(r, later));  // only older
  later.vcpus = 4;                       // CPU hotplug
  CHECK(ReportChanged(r, later));
}

TEST_CASE("a ratio outside what the reporter accepts is left out, not sent to be refused forever") {
  DomainView d;
  d.domain = "team-a_vm-1";
  d.identity = {"team-a", "vm-1"};
  d.info = {"team-a_vm-1", "u", 2, 6ULL * 1024 * 1024};
  d.reason = Reason::kOk;
  gm::RatioInputs req;
  req.compute_cpu_request = 4000;  // 2 vCPUs / 4000 cores = 0.0005
  req.vmi_memory_request = 4.0 * 1073741824.0;
  const auto r = BuildReport(d, "node-1", {"pod", "uid"}, req, std::chrono::system_clock::now());
  CHECK_FALSE(r.cpu_allocation_ratio);
  CHECK(*r.memory_overcommit_ratio == doctest::Approx(1.5));
  std::string err;
  CHECK_MESSAGE(gm::DecodeReport(gm::EncodeReport(r), err), err);
}

TEST_CASE("first report at once, then one per interval, and at once on change") {
  Fixture f;
  f.loop->RunOnce(t0);
  REQUIRE(f.sender.sent.size() == 1);
  CHECK_FALSE(f.sender.sent[0].load);
  CHECK(f.sender.sent[0].load_reason == "pending");

  f.loop->RunOnce(t0 + 10s);
  CHECK(f.sender.sent.size() == 1);  // nothing changed, interval not over

  f.cache.Record("team-a_vm-1", LoadResult::Ok({5, 4, 3}), t0 + 20s,
                 std::chrono::system_clock::now());
  f.loop->RunOnce(t0 + 20s);
  REQUIRE(f.sender.sent.size() == 2);  // the agent answered: sent at once
  CHECK(f.sender.sent[1].load->load1m == doctest::Approx(5));

  f.Seen(t0 + 130s);
  f.cache.Record("team-a_vm-1", LoadResult::Ok({5, 4, 3}), t0 + 130s,
                 std::chrono::system_clock::now());
  const auto next = f.loop->RunOnce(t0 + 139s);
  CHECK(f.sender.sent.size() == 2);
  CHECK(next == t0 + 140s);
  f.loop->RunOnce(t0 + 140s);
  CHECK(f.sender.sent.size() == 3);  // heartbeat keeps the reporter's copy fresh
}

TEST_CASE("the report carries the sidecar's health: libvirt, its interval, what failed before it") {
  Fixture f;
  f.metrics.libvirt_up.Set(1);
  f.loop->RunOnce(t0);
  REQUIRE(f.sender.sent.size() == 1);
  REQUIRE(f.sender.sent[0].health);
  CHECK(f.sender.sent[0].health->libvirt_up);
  CHECK(f.sender.sent[0].health->interval_seconds == 120);
  CHECK(f.sender.sent[0].health->failed_attempts == 0);
  CHECK(f.sender.sent[0].health->last_error.empty());

  // libvirt went away: news, sent at once, not at the next heartbeat.
  f.metrics.libvirt_up.Set(0);
  f.loop->RunOnce(t0 + 10s);
  REQUIRE(f.sender.sent.size() == 2);
  CHECK_FALSE(f.sender.sent[1].health->libvirt_up);

  // Three attempts fail; the one that gets through says so, and the next does not.
  f.sender.fail = true;
  f.Seen(t0 + 130s);
  auto next = f.loop->RunOnce(t0 + 130s);
  next = f.loop->RunOnce(next);
  next = f.loop->RunOnce(next);
  f.sender.fail = false;
  next = f.loop->RunOnce(next);
  REQUIRE(f.sender.sent.size() == 3);
  CHECK(f.sender.sent[2].health->failed_attempts == 3);
  CHECK(f.sender.sent[2].health->last_error == "http_503");
  f.Seen(next + 120s);
  f.loop->RunOnce(next + 120s);
  REQUIRE(f.sender.sent.size() == 4);
  CHECK(f.sender.sent[3].health->failed_attempts == 0);
  CHECK(f.sender.sent[3].health->last_error.empty());
}

TEST_CASE("a failing reporter gets capped exponential backoff, not a retry storm") {
  Fixture f;
  f.sender.fail = true;
  auto next = f.loop->RunOnce(t0);
  CHECK(next == t0 + 1000ms);
  CHECK(f.loop->RunOnce(t0 + 500ms) == t0 + 1000ms);  // a change during backoff waits
  next = f.loop->RunOnce(t0 + 1000ms);
  CHECK(next == t0 + 3000ms);  // 2 s
  next = f.loop->RunOnce(next);
  CHECK(next == t0 + 7000ms);  // 4 s
  next = f.loop->RunOnce(next);
  CHECK(next == t0 + 15000ms);  // 8 s, the cap
  next = f.loop->RunOnce(next);
  CHECK(next == t0 + 23000ms);  // still 8 s
  CHECK(f.sender.sent.empty());
  f.sender.fail = false;
  f.loop->RunOnce(next);
  CHECK(f.sender.sent.size() == 1);
}

TEST_CASE(
    "reports carry order: the sidecar's start time and a sequence that grows with every send") {
  const auto before = std::chrono::system_clock::now();
  Fixture f;
  f.loop->RunOnce(t0);
  f.sender.fail = true;
  f.loop->RunOnce(t0 + 120s);  // a failed send also uses up its number
  f.sender.fail = false;
  f.loop->RunOnce(t0 + 122s);
  REQUIRE(f.sender.sent.size() == 2);
  REQUIRE(f.sender.sent[0].order);
  REQUIRE(f.sender.sent[1].order);
  const auto start_ms = f.sender.sent[0].order->sidecar_start_ms;
  CHECK(start_ms >= static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              before.time_since_epoch())
                                              .count()));
  CHECK(f.sender.sent[1].order->sidecar_start_ms == start_ms);
  CHECK(f.sender.sent[0].order->sequence == 1);
  CHECK(f.sender.sent[1].order->sequence == 3);
  // A restarted sidecar numbers from 1 again, from a start that is not earlier.
  Fixture restarted;
  restarted.loop->RunOnce(t0);
  REQUIRE(restarted.sender.sent.size() == 1);
  CHECK(restarted.sender.sent[0].order->sequence == 1);
  CHECK(restarted.sender.sent[0].order->sidecar_start_ms >= start_ms);
}

TEST_CASE("retries are jittered, and a burst of failures is logged once, then its end") {
  Fixture f;
  f.jitter_factor = 0.5;  // the shortest wait jitter may choose: half the backoff
  std::ostringstream out;
  const auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_level(spdlog::level::info);
  logger->set_pattern("%l %v");
  spdlog::set_default_logger(logger);
  f.sender.fail = true;
  auto next = f.loop->RunOnce(t0);
  CHECK(next == t0 + 500ms);  // 1 s backoff, half of it
  next = f.loop->RunOnce(next);
  CHECK(next == t0 + 1500ms);  // 2 s backoff, half of it
  next = f.loop->RunOnce(next);
  f.sender.fail = false;
  f.loop->RunOnce(next);
  spdlog::set_default_logger(previous);
  CHECK(f.sender.sent.size() == 1);
  const std::string logged = out.str();
  CHECK(logged.rfind("warning report for team-a_vm-1 not delivered", 0) == 0);
  CHECK(logged.find("not delivered", logged.find("not delivered") + 1) ==
        std::string::npos);  // once per burst
  CHECK(logged.find("info report for team-a_vm-1 delivered again after 3 failed attempts") !=
        std::string::npos);
}

namespace {

// Records each POST and answers with a canned exchange.
class FakeTransport final : public HttpTransport {
 public:
  struct Call {
    std::string url;
    std::vector<std::string> headers;
    std::string body;
    std::chrono::milliseconds timeout;
  };
  std::vector<Call>* calls;
  HttpExchange answer;
  explicit FakeTransport(std::vector<Call>* c, HttpExchange a) : calls(c), answer(std::move(a)) {}
  HttpExchange Post(const std::string& url, const std::vector<std::string>& headers,
                    const std::string& body, std::chrono::milliseconds timeout) override {
    calls->push_back({url, headers, body, timeout});
    return answer;
  }
};

struct TokenFile {
  std::string path = "/tmp/gm-report-token-" + std::to_string(getpid());
  explicit TokenFile(const std::string& text) { Write(text); }
  ~TokenFile() {
    std::error_code ignored;  // a leftover file in /tmp fails no test
    std::filesystem::remove(path, ignored);
  }
  void Write(const std::string& text) const { std::ofstream(path, std::ios::trunc) << text; }
};

const char* kUrl = "https://gm-status-reporter.gm.svc/v1/reports";

}  // namespace

TEST_CASE(
    "the HTTPS sender posts JSON with the current token, and reads the token again each time") {
  std::vector<FakeTransport::Call> calls;
  TokenFile token("tok-1\n");
  HttpsReportSender sender(HttpsTarget{kUrl, "", "", token.path, 2500ms},
                           std::make_unique<FakeTransport>(&calls, HttpExchange{202, "{}", ""}));
  CHECK(sender.Send("{\"a\":1}").ok);
  token.Write("tok-2");  // the kubelet rotated the projected token
  CHECK(sender.Send("{\"a\":2}").ok);
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].url == kUrl);
  CHECK(calls[0].body == "{\"a\":1}");
  CHECK(calls[0].timeout == 2500ms);
  CHECK(calls[0].headers ==
        std::vector<std::string>{"Content-Type: application/json", "Authorization: Bearer tok-1"});
  CHECK(calls[1].headers[1] == "Authorization: Bearer tok-2");
}

TEST_CASE("the HTTPS sender turns refusals, transport errors and bad tokens into clear errors") {
  std::vector<FakeTransport::Call> calls;
  TokenFile token("tok");
  {
    HttpsReportSender s(HttpsTarget{kUrl, "", "", token.path},
                        std::make_unique<FakeTransport>(
                            &calls, HttpExchange{403, "pod is not the VMI's active pod\n", ""}));
    const auto r = s.Send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.error ==
          std::string("POST ") + kUrl + ": HTTP 403: pod is not the VMI's active pod\\n");
    CHECK(r.error_class == "http_403");
  }
  {
    // The reporter's (or a proxy's) text cannot forge a log line or drive the terminal.
    HttpsReportSender s(
        HttpsTarget{kUrl, "", "", token.path},
        std::make_unique<FakeTransport>(
            &calls,
            HttpExchange{502, "bad\n2026-12-02T03:00:00Z info report delivered\x1b[2J", ""}));
    const auto r = s.Send("{}");
    CHECK(r.error == std::string("POST ") + kUrl +
                         ": HTTP 502: bad\\n2026-12-02T03:00:00Z info report delivered\\x1b[2J");
  }
  {
    HttpsReportSender s(HttpsTarget{kUrl, "", "", token.path},
                        std::make_unique<FakeTransport>(
                            &calls, HttpExchange{0, "", "no response from x within 5000 ms"}));
    const auto r = s.Send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.error == std::string("POST ") + kUrl + ": no response from x within 5000 ms");
    CHECK(r.error_class == "unreachable");
  }
  calls.clear();
  // A file far larger than any token (a misconfigured path) is refused whole, not read and sent.
  for (const std::string& bad : std::vector<std::string>{
           "", "\n", "two words", "tok\r\nX-Injected: 1", std::string(100 << 10, 'a')}) {
    CAPTURE(bad.size());
    token.Write(bad);
    HttpsReportSender s(HttpsTarget{kUrl, "", "", token.path},
                        std::make_unique<FakeTransport>(&calls, HttpExchange{200, "", ""}));
    const auto r = s.Send("{}");
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("token file " + token.path) != std::string::npos);
    CHECK(r.error_class == "token_unreadable");
  }
  HttpsReportSender missing(HttpsTarget{kUrl, "", "", "/nonexistent/token"},
                            std::make_unique<FakeTransport>(&calls, HttpExchange{200, "", ""}));
  CHECK(missing.Send("{}").error == "cannot read token file /nonexistent/token");
  CHECK(calls.empty());  // nothing is sent without a usable token
}
