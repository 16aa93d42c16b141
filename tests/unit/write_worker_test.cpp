// The leader's writers (write_worker) and what leading changes (leadership):
// only the leader writes, each key goes back to the queue as its outcome says,
// and a replica that stops leading unlabels its pod and lets its writes end
// before the Lease is handed on.

#include "write_worker.h"

#include <doctest/doctest.h>
#include <prometheus/gauge.h>

#include <atomic>
#include <deque>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "leadership.h"
#include "metrics.h"
#include "reconciler.h"

using namespace gm::reporter;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// A small real queue: Get hands out keys in order until none is left (a
// shut-down queue), and what the worker gave back is kept for the test.
class ListQueue final : public KeyQueue {
 public:
  std::deque<std::string> ready;
  std::vector<std::string> done, forgotten, retried;
  bool Get(std::string& key) override {
    if (ready.empty()) return false;
    key = ready.front();
    ready.pop_front();
    return true;
  }
  void Done(const std::string& key) override { done.push_back(key); }
  void Forget(const std::string& key) override { forgotten.push_back(key); }
  void AddRateLimited(const std::string& key) override { retried.push_back(key); }
};

// The pods of an API server, as far as labels go: merge patches applied to
// label maps; a pod it does not hold answers 404.
class LabelledPods final : public ObjectWriter {
 public:
  std::map<std::string, std::map<std::string, std::string>> labels;  // "ns/name" → labels
  WriteResult PatchPod(const std::string& ns, const std::string& name, const json& patch) override {
    const auto it = labels.find(ns + "/" + name);
    if (it == labels.end()) return {404, "pods \"" + name + "\" not found", {}};
    for (const auto& [k, v] : patch["metadata"]["labels"].items()) {
      if (v.is_null())
        it->second.erase(k);
      else
        it->second[k] = v.get<std::string>();
    }
    return {200, "", json::object()};
  }
  WriteResult PatchVmiStatus(const std::string&, const std::string&, const json&) override {
    return {405, "not here", {}};
  }
  WriteResult PatchVmi(const std::string&, const std::string&, const json&) override {
    return {405, "not here", {}};
  }
};

}  // namespace

TEST_CASE("a worker reconciles each key while leading and gives it back as its outcome says") {
  ListQueue q;
  q.ready = {"ns/done", "ns/retry", "ns/drop"};
  std::atomic<bool> leading{true};
  WriteGate gate([&] { return leading.load(); });
  std::vector<std::string> reconciled;
  ReporterMetrics m;
  RunWriteWorker(
      q, gate,
      [&](const std::string& key) {
        reconciled.push_back(key);
        CHECK(gate.in_flight() == 1);
        if (key == "ns/retry") return Outcome::kRetry;
        return key == "ns/drop" ? Outcome::kDrop : Outcome::kDone;
      },
      &m.reconcile_duration);
  CHECK(reconciled == std::vector<std::string>{"ns/done", "ns/retry", "ns/drop"});
  CHECK(q.retried == std::vector<std::string>{"ns/retry"});
  CHECK(q.forgotten == std::vector<std::string>{"ns/done", "ns/drop"});
  CHECK(q.done == std::vector<std::string>{"ns/done", "ns/retry", "ns/drop"});
  CHECK(gate.in_flight() == 0);
}

TEST_CASE("a standby writes nothing: its keys are forgotten and done") {
  ListQueue q;
  q.ready = {"ns/a", "ns/b"};
  WriteGate gate([] { return false; });
  int reconciles = 0;
  RunWriteWorker(
      q, gate,
      [&](const std::string&) {
        ++reconciles;
        return Outcome::kDone;
      },
      nullptr);
  CHECK(reconciles == 0);
  CHECK(q.forgotten == std::vector<std::string>{"ns/a", "ns/b"});
  CHECK(q.done == std::vector<std::string>{"ns/a", "ns/b"});
  CHECK(q.retried.empty());
}

TEST_CASE(
    "leading labels the replica's pod; stopping unlabels it and waits for the writes in flight") {
  LabelledPods api;
  api.labels["guest-metrics/reporter-0"] = {{"app", "status-reporter"}};
  std::atomic<bool> leading{false};
  WriteGate gate([&] { return leading.load(); });
  ReporterMetrics m;
  Leadership l(api, "guest-metrics", "reporter-0", m.leader, gate);

  l.Started();
  leading = true;
  CHECK(api.labels["guest-metrics/reporter-0"].at(kLeaderLabel) == "true");
  CHECK(m.leader.Value() == 1);

  // A write is in flight when the Lease is lost.
  REQUIRE(gate.Enter());
  leading = false;
  CHECK_FALSE(gate.Enter());  // no new write gets in
  auto stopped = std::async(std::launch::async, [&] { l.Stopped(); });
  CHECK(stopped.wait_for(300ms) == std::future_status::timeout);  // held by the write
  gate.Leave();
  REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
  CHECK(api.labels["guest-metrics/reporter-0"].count(kLeaderLabel) == 0);
  CHECK(api.labels["guest-metrics/reporter-0"].at("app") == "status-reporter");
  CHECK(m.leader.Value() == 0);
}

TEST_CASE(
    "at start a replica removes a leader label left from its last run, and no pod is harmless") {
  LabelledPods api;
  api.labels["ns/reporter-0"] = {{kLeaderLabel, "true"}};
  WriteGate gate([] { return false; });
  ReporterMetrics m;
  Leadership(api, "ns", "reporter-0", m.leader, gate).Unlabel();
  CHECK(api.labels["ns/reporter-0"].empty());

  Leadership outside(api, "ns", "my-laptop", m.leader, gate);  // run outside a cluster
  outside.Started();
  CHECK(m.leader.Value() == 1);
  outside.Stopped();
  CHECK(m.leader.Value() == 0);
}
