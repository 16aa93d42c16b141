#include <doctest/doctest.h>

#include "report_client.h"

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
    if (fail) return {false, "HTTP 503"};
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
  Fixture() {
    requests.compute_cpu_request = 0.2;
    requests.vmi_memory_request = 4.0 * 1073741824.0;
    loop = std::make_unique<ReportLoop>(
        ReportLoopConfig{"node-1", {"virt-launcher-vm-1-x", "uid-1"}, requests, 120s, 1000ms, 8000ms}, sender, cache,
        metrics);
    cache.Observe({"team-a_vm-1", "u", 2, 6 * 1024 * 1024}, {"team-a", "vm-1"}, t0);
  }
  void Seen(Clock::time_point t) { cache.Observe({"team-a_vm-1", "u", 2, 6 * 1024 * 1024}, {"team-a", "vm-1"}, t); }
};

}  // namespace

TEST_CASE("the report carries identity, live allocation, load with its age, and both ratios") {
  DomainView d;
  d.domain = "team-a_vm-1";
  d.identity = {"team-a", "vm-1"};
  d.info = {"team-a_vm-1", "u", 2, 6 * 1024 * 1024};
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

TEST_CASE("first report at once, then one per interval, and at once on change") {
  Fixture f;
  f.loop->RunOnce(t0);
  REQUIRE(f.sender.sent.size() == 1);
  CHECK_FALSE(f.sender.sent[0].load);
  CHECK(f.sender.sent[0].load_reason == "pending");

  f.loop->RunOnce(t0 + 10s);
  CHECK(f.sender.sent.size() == 1);  // nothing changed, interval not over

  f.cache.Record("team-a_vm-1", LoadResult::Ok({5, 4, 3}), t0 + 20s, std::chrono::system_clock::now());
  f.loop->RunOnce(t0 + 20s);
  REQUIRE(f.sender.sent.size() == 2);  // the agent answered: sent at once
  CHECK(f.sender.sent[1].load->load1m == doctest::Approx(5));

  f.Seen(t0 + 130s);
  f.cache.Record("team-a_vm-1", LoadResult::Ok({5, 4, 3}), t0 + 130s, std::chrono::system_clock::now());
  const auto next = f.loop->RunOnce(t0 + 139s);
  CHECK(f.sender.sent.size() == 2);
  CHECK(next == t0 + 140s);
  f.loop->RunOnce(t0 + 140s);
  CHECK(f.sender.sent.size() == 3);  // heartbeat keeps the reporter's copy fresh
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
