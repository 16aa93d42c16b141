#include "gm/kube/leader.h"

#include <doctest/doctest.h>

#include <memory>
#include <thread>

#include "fixture.h"
#include "gm/kube/microtime.h"
#include "gm/kube/paths.h"

using namespace gm::kube;
using kube_it::Eventually;
using kube_it::Fixture;
using kube_it::SecondsSince;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

const std::string kLease = ObjectPath("coordination.k8s.io/v1", "leases", "default", "gm-reporter");

// One candidate with its own client, running on its own thread.
class Candidate {
 public:
  Candidate(const Config& config, const std::string& identity) : client_(config) {
    LeaderElectionConfig c;
    c.lease_namespace = "default";
    c.lease_name = "gm-reporter";
    c.identity = identity;
    c.lease_duration = milliseconds(3000);
    c.renew_deadline = milliseconds(2000);
    c.retry_period = milliseconds(500);
    c.on_started_leading = [this] { ++started; };
    c.on_stopped_leading = [this] { ++stopped; };
    elector_ = std::make_unique<LeaderElector>(client_, c);
    thread_ = std::thread([this] { elector_->Run(stop_); });
  }
  ~Candidate() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool IsLeader() const { return elector_->IsLeader(); }

  std::atomic<int> started{0};
  std::atomic<int> stopped{0};

 private:
  Client client_;
  std::unique_ptr<LeaderElector> elector_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

TEST_CASE(
    "leader election: of two candidates exactly one leads, a graceful stop hands over quickly") {
  Fixture fx;
  Candidate a(fx.config(), "pod-a");
  Candidate b(fx.config(), "pod-b");
  REQUIRE(Eventually([&] { return a.IsLeader() || b.IsLeader(); }, milliseconds(3000)));
  // Through several renewals, never both and never neither.
  const auto watch_until = Clock::now() + milliseconds(1500);
  while (Clock::now() < watch_until) {
    REQUIRE(a.IsLeader() != b.IsLeader());
    std::this_thread::sleep_for(milliseconds(20));
  }
  Candidate& leader = a.IsLeader() ? a : b;
  Candidate& standby = a.IsLeader() ? b : a;
  const std::string leader_id = a.IsLeader() ? "pod-a" : "pod-b";

  auto lease = fx.Admin("GET", kLease);
  CHECK(lease["spec"]["holderIdentity"] == leader_id);
  CHECK(lease["spec"]["leaseDurationSeconds"] == 3);
  CHECK(ParseMicroTime(lease["spec"]["acquireTime"].get<std::string>()));
  CHECK(ParseMicroTime(lease["spec"]["renewTime"].get<std::string>()));
  const int transitions = lease["spec"]["leaseTransitions"].get<int>();
  CHECK(leader.started == 1);
  CHECK(standby.started == 0);

  const auto stop_at = Clock::now();
  leader.Stop();  // releases the Lease
  CHECK(leader.stopped == 1);
  CHECK_FALSE(leader.IsLeader());
  REQUIRE(Eventually([&] { return standby.IsLeader(); }, milliseconds(4000)));
  CHECK(SecondsSince(stop_at) < 2.5);  // far sooner than the 3 s lease would expire
  lease = fx.Admin("GET", kLease);
  CHECK(lease["spec"]["holderIdentity"] != leader_id);
  CHECK(lease["spec"]["leaseTransitions"] == transitions + 1);
}

TEST_CASE(
    "leader election: a stop that cuts off a renewal the server already committed still hands the "
    "Lease back") {
  Fixture fx;
  Candidate a(fx.config(), "pod-a");
  REQUIRE(Eventually([&] { return a.IsLeader(); }, milliseconds(3000)));
  // The next renewal is committed but its answer is held back, so the leader
  // is stopped not knowing the Lease's new resourceVersion.
  fx.AddFault({{"method", "PUT"}, {"resource", "leases"}, {"answerDelaySeconds", 3}});
  REQUIRE(Eventually(
      [&] {
        for (const auto& r : fx.Requests("update", "leases")) {
          if (r.contains("answerDelaySeconds")) return true;
        }
        return false;
      },
      milliseconds(3000)));
  const auto stop_at = Clock::now();
  a.Stop();
  CHECK(SecondsSince(stop_at) < 2.0);  // does not wait for the held-back answer
  CHECK(a.stopped == 1);
  const auto lease = fx.Admin("GET", kLease);
  CHECK(lease["spec"].value("holderIdentity", "") == "");
  CHECK(lease["spec"]["leaseDurationSeconds"] == 1);
}

TEST_CASE("leader election: a leader that cannot renew stops leading within the renew deadline") {
  Fixture fx;
  Candidate a(fx.config(), "pod-a");
  REQUIRE(Eventually([&] { return a.IsLeader(); }, milliseconds(3000)));
  std::this_thread::sleep_for(milliseconds(600));  // at least one renewal done

  fx.AddFault({{"method", "PUT"}, {"resource", "leases"}, {"code", 500}, {"count", -1}});
  const auto fault_at = Clock::now();
  REQUIRE(Eventually([&] { return !a.IsLeader(); }, milliseconds(5000)));
  const double lost_after = SecondsSince(fault_at);
  // Retry period + renew deadline at most, and before the lease (3 s after
  // the last renewal, which came before the fault) could pass to anyone else.
  CHECK(lost_after >= 1.0);
  CHECK(lost_after < 2.9);
  CHECK(a.stopped == 1);
  CHECK(fx.Requests("update", "leases").back()["code"] == 500);
}

TEST_CASE("leader election: a leader that sees another holder steps down at its next renewal") {
  Fixture fx;
  Candidate a(fx.config(), "pod-a");
  REQUIRE(Eventually([&] { return a.IsLeader(); }, milliseconds(3000)));
  // Someone else writes the Lease (another elector with a stale view, an operator).
  fx.Admin("PATCH", kLease,
           {{"spec",
             {{"holderIdentity", "intruder"},
              {"renewTime", FormatMicroTime(std::chrono::system_clock::now())}}}});
  const auto start = Clock::now();
  REQUIRE(Eventually([&] { return !a.IsLeader(); }, milliseconds(3000)));
  CHECK(SecondsSince(start) < 1.5);  // at the next renewal, not after the renew deadline
  CHECK(fx.Admin("GET", kLease)["spec"]["holderIdentity"] == "intruder");
}
