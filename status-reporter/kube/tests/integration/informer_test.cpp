#include "gm/kube/informer.h"

#include <doctest/doctest.h>

#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "fixture.h"

using namespace gm::kube;
using kube_it::Eventually;
using kube_it::Fixture;
using kube_it::kPods;
using kube_it::Pod;
using kube_it::SecondsSince;
using Clock = std::chrono::steady_clock;

namespace {

// What the tests keep of a pod: two fields, not the JSON.
struct PodView {
  std::string app;
  std::string phase;
};

PodView View(const nlohmann::json& pod) {
  PodView v;
  v.app = pod["metadata"].value("labels", nlohmann::json::object()).value("app", "");
  v.phase = pod.value("status", nlohmann::json::object()).value("phase", "");
  return v;
}

// Records handler calls from the informer's thread.
struct Events {
  std::mutex mu;
  std::vector<std::string> log;
  std::set<std::string> deleted;
  InformerHandlers<PodView> Handlers() {
    return {[this](const std::string& key, const PodView& v) {
              std::lock_guard<std::mutex> lock(mu);
              log.push_back("upsert " + key + " " + v.app);
            },
            [this](const std::string& key) {
              std::lock_guard<std::mutex> lock(mu);
              log.push_back("delete " + key);
              deleted.insert(key);
            }};
  }
  bool Saw(const std::string& entry) {
    std::lock_guard<std::mutex> lock(mu);
    return std::find(log.begin(), log.end(), entry) != log.end();
  }
};

// An informer on its own thread, stopped and joined on scope exit.
struct Running {
  Running(Client& client, InformerOptions options, Events& events)
      : informer(client, std::move(options), View, events.Handlers()),
        thread([this] { informer.Run(stop); }) {}
  ~Running() {
    stop = true;
    thread.join();
  }
  Informer<PodView> informer;
  std::atomic<bool> stop{false};
  std::thread thread;
};

InformerOptions Options(int page_size = 500) {
  InformerOptions o;
  o.path = kPods;
  o.page_size = page_size;
  o.backoff_initial = std::chrono::milliseconds(100);
  return o;
}

nlohmann::json Seed(int n) {
  nlohmann::json items = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    auto pod = Pod("default", "seed-" + std::to_string(100 + i), {{"app", "seed"}});
    pod["status"] = {{"phase", "Running"}};
    items.push_back(pod);
  }
  return items;
}

long long Rv(const std::string& rv) { return rv.empty() ? 0 : std::stoll(rv); }

}  // namespace

TEST_CASE("informer: lists in pages, keeps only the transformed fields, then watches changes") {
  Fixture fx;
  Client client(fx.config());
  fx.Admin("POST", "/fixture/load", Seed(25));
  fx.ResetRequests();
  Events events;
  Running run(client, Options(10), events);
  REQUIRE(run.informer.WaitForSync(std::chrono::seconds(5)));
  const std::string list_rv = run.informer.LastSyncResourceVersion();
  CHECK(run.informer.Size() == 25);
  const auto one = run.informer.Get("default/seed-107");
  REQUIRE(one);
  CHECK(one->app == "seed");
  CHECK(one->phase == "Running");
  const auto lists = fx.Requests("list", "pods");
  REQUIRE(lists.size() == 3);
  CHECK(lists[0]["query"].get<std::string>().find("limit=10") != std::string::npos);
  CHECK(lists[1]["query"].get<std::string>().find("continue=") != std::string::npos);
  CHECK(lists[2]["query"].get<std::string>().find("continue=") != std::string::npos);
  REQUIRE(Eventually([&] { return !fx.Requests("watch", "pods").empty(); }));
  const auto watch_query = fx.Requests("watch", "pods").front()["query"].get<std::string>();
  CHECK(watch_query.find("resourceVersion=" + list_rv) != std::string::npos);
  CHECK(watch_query.find("allowWatchBookmarks=true") != std::string::npos);

  fx.Create(kPods, Pod("default", "new", {{"app", "web"}}));
  REQUIRE(Eventually([&] { return events.Saw("upsert default/new web"); }));
  fx.Admin("PATCH", ObjectPath("v1", "pods", "default", "new"),
           {{"metadata", {{"labels", {{"app", "api"}}}}}});
  REQUIRE(Eventually([&] { return events.Saw("upsert default/new api"); }));
  CHECK(run.informer.Get("default/new")->app == "api");
  fx.Admin("DELETE", ObjectPath("v1", "pods", "default", "new"));
  REQUIRE(Eventually([&] { return events.Saw("delete default/new"); }));
  CHECK_FALSE(run.informer.Get("default/new"));
}

TEST_CASE("informer: label selectors filter, bookmarks alone advance the resourceVersion") {
  Fixture fx;
  Client client(fx.config());
  fx.Create(kPods, Pod("default", "mine", {{"app", "gm"}}));
  fx.Create(kPods, Pod("default", "other", {{"app", "x"}}));
  Events events;
  InformerOptions options = Options();
  options.label_selector = "app=gm";
  Running run(client, options, events);
  REQUIRE(run.informer.WaitForSync(std::chrono::seconds(5)));
  CHECK(run.informer.Size() == 1);
  CHECK(run.informer.Get("default/mine"));
  const long long synced_rv = Rv(run.informer.LastSyncResourceVersion());

  // Writes the informer does not see (another kind, a pod outside the selector)
  // move the server's version; bookmarks carry it to the informer.
  const auto lease = fx.Create(CollectionPath("coordination.k8s.io/v1", "leases", "default"),
                               {{"metadata", {{"name", "l"}}}, {"spec", nlohmann::json::object()}});
  fx.Create(kPods, Pod("default", "other2", {{"app", "x"}}));
  const long long lease_rv = Rv(lease["metadata"]["resourceVersion"]);
  CHECK(lease_rv > synced_rv);
  REQUIRE(Eventually([&] { return Rv(run.informer.LastSyncResourceVersion()) >= lease_rv; }));
  std::lock_guard<std::mutex> lock(events.mu);
  CHECK(events.log == std::vector<std::string>{"upsert default/mine gm"});
}

TEST_CASE("informer: a dropped watch resumes from the last resourceVersion without losing events") {
  Fixture fx;
  Client client(fx.config());
  fx.Admin("POST", "/fixture/load", Seed(3));
  Events events;
  Running run(client, Options(), events);
  REQUIRE(run.informer.WaitForSync(std::chrono::seconds(5)));
  REQUIRE(Eventually([&] { return !fx.Requests("watch", "pods").empty(); }));
  const std::string rv_before = run.informer.LastSyncResourceVersion();

  fx.Admin("POST", "/fixture/drop-watches", {{"graceful", false}});
  for (int i = 0; i < 5; ++i)
    fx.Create(kPods, Pod("default", "while-down-" + std::to_string(i), {{"app", "d"}}));
  REQUIRE(Eventually([&] { return run.informer.Size() == 8; }));
  for (int i = 0; i < 5; ++i)
    CHECK(events.Saw("upsert default/while-down-" + std::to_string(i) + " d"));
  CHECK(fx.Requests("list", "pods").size() == 1);  // resumed, not relisted
  const auto watches = fx.Requests("watch", "pods");
  REQUIRE(watches.size() >= 2);
  CHECK(watches[1]["query"].get<std::string>().find("resourceVersion=" + rv_before) !=
        std::string::npos);
}

TEST_CASE(
    "informer: after compaction the resumed watch gets 410, the informer relists and reports what "
    "it missed") {
  Fixture fx;
  Client client(fx.config());
  fx.Admin("POST", "/fixture/load", Seed(3));
  Events events;
  Running run(client, Options(), events);
  REQUIRE(run.informer.WaitForSync(std::chrono::seconds(5)));
  REQUIRE(Eventually([&] { return !fx.Requests("watch", "pods").empty(); }));

  // Hold the reconnect long enough for the changes and the compaction to happen while disconnected.
  fx.AddFault({{"verb", "watch"}, {"resource", "pods"}, {"delaySeconds", 0.5}});
  fx.Admin("POST", "/fixture/drop-watches", {{"graceful", false}});
  fx.Admin("DELETE", ObjectPath("v1", "pods", "default", "seed-100"));
  fx.Create(kPods, Pod("default", "fresh", {{"app", "f"}}));
  fx.Admin("POST", "/fixture/compact", nlohmann::json::object());

  REQUIRE(Eventually([&] { return fx.Requests("list", "pods").size() == 2; }));
  REQUIRE(Eventually([&] {
    return events.Saw("delete default/seed-100") && events.Saw("upsert default/fresh f");
  }));
  CHECK_FALSE(run.informer.Get("default/seed-100"));
  CHECK(run.informer.Size() == 3);
  // The relist reports every present object again, as a Replace.
  std::lock_guard<std::mutex> lock(events.mu);
  CHECK(std::count(events.log.begin(), events.log.end(), "upsert default/seed-101 seed") == 2);
}

TEST_CASE("informer: a 410 answer to the watch request also relists, stop ends Run promptly") {
  Fixture fx;
  Client client(fx.config());
  Events events;
  auto run = std::make_unique<Running>(client, Options(), events);
  REQUIRE(run->informer.WaitForSync(std::chrono::seconds(5)));
  REQUIRE(Eventually([&] { return !fx.Requests("watch", "pods").empty(); }));
  fx.AddFault({{"verb", "watch"}, {"resource", "pods"}, {"code", 410}});
  fx.Admin("POST", "/fixture/drop-watches", {{"graceful", true}});
  REQUIRE(Eventually([&] { return fx.Requests("list", "pods").size() == 2; }));
  REQUIRE(Eventually([&] { return fx.Requests("watch", "pods").size() >= 3; }));

  const auto start = Clock::now();
  run.reset();                       // stop + join while the watch is open
  CHECK(SecondsSince(start) < 2.0);  // not after the watch ends by itself
}
