#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "fixture.h"
#include "gm/kube/client.h"
#include "gm/kube/paths.h"

using namespace gm::kube;
using kube_it::Fixture;
using kube_it::kPods;
using kube_it::Pod;
using kube_it::SecondsSince;
using Clock = std::chrono::steady_clock;

TEST_CASE("watch: events arrive in order and the handler ends the stream") {
  Fixture fx;
  Client client(fx.config());
  fx.Create(kPods, Pod("default", "before"));
  std::atomic<bool> stop{false};
  std::vector<std::string> seen;
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fx.Create(kPods, Pod("default", "after"));
    fx.Admin("DELETE", ObjectPath("v1", "pods", "default", "before"));
  });
  // resourceVersion unset: the existing objects come first, as ADDED.
  client.Watch(
      kPods, {},
      [&](const std::string& type, const nlohmann::json& object) {
        seen.push_back(type + " " + object["metadata"]["name"].get<std::string>());
        return seen.size() < 3;
      },
      stop);
  writer.join();
  CHECK(seen == std::vector<std::string>{"ADDED before", "ADDED after", "DELETED before"});
}

TEST_CASE(
    "watch: bookmarks when asked, timeoutSeconds ends the stream cleanly, stop ends it at once") {
  Fixture fx;
  Client client(fx.config());
  const auto list = client.Get(kPods);
  std::atomic<bool> stop{false};
  int bookmarks = 0;
  auto start = Clock::now();
  client.Watch(
      kPods,
      {{"resourceVersion", list["metadata"]["resourceVersion"]},
       {"allowWatchBookmarks", "true"},
       {"timeoutSeconds", "1"}},
      [&](const std::string& type, const nlohmann::json& object) {
        if (type == "BOOKMARK") {
          ++bookmarks;
          CHECK_FALSE(object["metadata"]["resourceVersion"].get<std::string>().empty());
        }
        return true;
      },
      stop);
  CHECK(SecondsSince(start) >= 0.9);
  CHECK(bookmarks >= 2);  // one every 0.3 s

  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop = true;
  });
  start = Clock::now();
  client.Watch(
      kPods, {}, [](const std::string&, const nlohmann::json&) { return true; }, stop);
  CHECK(SecondsSince(start) < 2.0);  // at once, not at the watch's own end
  stopper.join();
}

TEST_CASE("watch: a compacted resourceVersion is an ERROR event, thrown as Gone") {
  Fixture fx;
  Client client(fx.config());
  const auto old_rv =
      fx.Create(kPods, Pod("default", "a"))["metadata"]["resourceVersion"].get<std::string>();
  fx.Create(kPods, Pod("default", "b"));
  fx.Admin("POST", "/fixture/compact", nlohmann::json::object());
  std::atomic<bool> stop{false};
  try {
    client.Watch(
        kPods, {{"resourceVersion", old_rv}},
        [](const std::string&, const nlohmann::json&) { return true; }, stop);
    FAIL("no error");
  } catch (const Gone& e) {
    CHECK(e.code() == 410);
    CHECK(e.reason() == "Expired");
    CHECK(e.message().find("too old resource version") != std::string::npos);
  }
}

TEST_CASE("watch: a dropped connection is a TransportError, an error answer is thrown as such") {
  Fixture fx;
  Client client(fx.config());
  std::atomic<bool> stop{false};
  std::thread dropper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    fx.Admin("POST", "/fixture/drop-watches", {{"graceful", false}});
  });
  CHECK_THROWS_AS(
      client.Watch(
          kPods, {}, [](const std::string&, const nlohmann::json&) { return true; }, stop),
      TransportError);
  dropper.join();

  fx.AddFault({{"verb", "watch"}, {"code", 403}});
  CHECK_THROWS_AS(
      client.Watch(
          kPods, {}, [](const std::string&, const nlohmann::json&) { return true; }, stop),
      Forbidden);
}
