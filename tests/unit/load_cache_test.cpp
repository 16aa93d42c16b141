#include "load_cache.h"

#include <doctest/doctest.h>

using namespace gm::exporter;
using namespace std::chrono_literals;

namespace {
const auto t0 = Clock::time_point{} + 1000s;
const auto wall = std::chrono::system_clock::time_point{} + 1700000000s;
DomainInfo Dom(const char* name) { return {name, "uuid", 2, 2097152}; }
}  // namespace

TEST_CASE("freshness rule") {
  CHECK(EffectiveReason(Reason::kOk, t0, t0 + 300s, 300s) == Reason::kOk);
  CHECK(EffectiveReason(Reason::kOk, t0, t0 + 301s, 300s) == Reason::kStale);
  CHECK(EffectiveReason(Reason::kOk, std::nullopt, t0, 300s) == Reason::kStale);
  CHECK(EffectiveReason(Reason::kAgentTimeout, t0, t0, 300s) == Reason::kAgentTimeout);
}

TEST_CASE("a fresh sample is shown, an old one is not, and says stale") {
  LoadCache cache(300s);
  cache.Observe(Dom("ns_a"), {"ns", "a"}, t0);
  cache.Record("ns_a", LoadResult::Ok({1, 2, 3}), t0, wall);
  auto snap = cache.Snapshot(t0 + 10s);
  REQUIRE(snap.size() == 1);
  CHECK(snap[0].reason == Reason::kOk);
  REQUIRE(snap[0].load);
  CHECK(snap[0].load->load5m == doctest::Approx(2));
  CHECK(snap[0].sample_wall_time == wall);

  cache.Observe(Dom("ns_a"), {"ns", "a"}, t0 + 290s);  // still running, sample not renewed
  snap = cache.Snapshot(t0 + 301s);
  REQUIRE(snap.size() == 1);
  CHECK_FALSE(snap[0].load);
  CHECK(snap[0].reason == Reason::kStale);
}

TEST_CASE("a failed read drops the previous sample at once") {
  LoadCache cache(300s);
  cache.Observe(Dom("ns_a"), {"ns", "a"}, t0);
  cache.Record("ns_a", LoadResult::Ok({1, 2, 3}), t0, wall);
  cache.Record("ns_a", LoadResult::Fail(Reason::kAgentDisconnected, "agent disconnected"), t0 + 1s,
               wall);
  const auto snap = cache.Snapshot(t0 + 2s);
  REQUIRE(snap.size() == 1);
  CHECK_FALSE(snap[0].load);
  CHECK(snap[0].reason == Reason::kAgentDisconnected);
  CHECK(snap[0].detail == "agent disconnected");
}

TEST_CASE("a domain not seen running within the bound disappears entirely") {
  LoadCache cache(300s);
  cache.Observe(Dom("ns_a"), {"ns", "a"}, t0);
  cache.Record("ns_a", LoadResult::Ok({1, 2, 3}), t0, wall);
  CHECK(cache.Snapshot(t0 + 300s).size() == 1);
  CHECK(cache.Snapshot(t0 + 301s).empty());
}

TEST_CASE("removal, retain-only, and records for unknown domains") {
  LoadCache cache(300s);
  cache.Observe(Dom("ns_a"), {"ns", "a"}, t0);
  cache.Observe(Dom("ns_b"), {"ns", "b"}, t0);
  cache.Observe(Dom("ns_c"), {"ns", "c"}, t0);
  cache.Remove("ns_a");
  cache.RetainOnly({"ns_b", "ns_x"});
  // A read that finishes after its domain was removed must not bring it back.
  cache.Record("ns_c", LoadResult::Ok({1, 1, 1}), t0, wall);
  const auto snap = cache.Snapshot(t0);
  REQUIRE(snap.size() == 1);
  CHECK(snap[0].domain == "ns_b");
  CHECK(snap[0].reason == Reason::kPending);
}
