#include "gm/kube/leader.h"

#include <doctest/doctest.h>

#include <stdexcept>

using namespace gm::kube;

TEST_CASE("lease record: fields read from the spec, missing ones as zero values") {
  const LeaseRecord r = LeaseRecordFromSpec(nlohmann::json::parse(
      R"({"holderIdentity":"pod-a","leaseDurationSeconds":15,"acquireTime":"2024-05-01T12:00:00.000000Z",
          "renewTime":"2024-05-01T12:00:10.000000Z","leaseTransitions":3})"));
  CHECK(r.holder_identity == "pod-a");
  CHECK(r.lease_duration_seconds == 15);
  CHECK(r.acquire_time == "2024-05-01T12:00:00.000000Z");
  CHECK(r.renew_time == "2024-05-01T12:00:10.000000Z");
  CHECK(r.lease_transitions == 3);

  const LeaseRecord empty =
      LeaseRecordFromSpec(nlohmann::json::parse(R"({"holderIdentity":null})"));
  CHECK(empty.holder_identity.empty());
  CHECK(empty.lease_duration_seconds == 0);
  CHECK(LeaseRecordFromSpec(nullptr).holder_identity.empty());
  CHECK_THROWS_AS(LeaseRecordFromSpec(nlohmann::json::parse(R"({"leaseDurationSeconds":"15"})")),
                  std::invalid_argument);
  CHECK_THROWS_AS(LeaseRecordFromSpec(nlohmann::json::parse(R"({"holderIdentity":7})")),
                  std::invalid_argument);
  CHECK_THROWS_AS(LeaseRecordFromSpec(nlohmann::json::parse("[]")), std::invalid_argument);
}

TEST_CASE("leader election config: durations must nest and names must be set") {
  Config c;
  c.server = "https://127.0.0.1:9";
  Client client(c);
  LeaderElectionConfig ok;
  ok.lease_namespace = "ns";
  ok.lease_name = "gm";
  ok.identity = "me";
  CHECK_NOTHROW(LeaderElector(client, ok));
  LeaderElectionConfig bad = ok;
  bad.identity.clear();
  CHECK_THROWS_AS(LeaderElector(client, bad), std::invalid_argument);
  bad = ok;
  bad.renew_deadline = bad.lease_duration;
  CHECK_THROWS_AS(LeaderElector(client, bad), std::invalid_argument);
  bad = ok;
  bad.retry_period = bad.renew_deadline;
  CHECK_THROWS_AS(LeaderElector(client, bad), std::invalid_argument);
  bad = ok;
  bad.lease_duration = std::chrono::milliseconds(900);
  bad.renew_deadline = std::chrono::milliseconds(800);
  bad.retry_period = std::chrono::milliseconds(100);
  CHECK_THROWS_AS(LeaderElector(client, bad), std::invalid_argument);
}
