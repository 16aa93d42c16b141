// The informer's store and handlers, driven through the reflector's sink
// interface: no server involved.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "gm/kube/informer.h"

using namespace gm::kube;

namespace {

struct PodInfo {
  std::string node;
};

nlohmann::json Pod(const std::string& name, const std::string& node) {
  return {
      {"metadata", {{"namespace", "ns"}, {"name", name}, {"resourceVersion", "1"}}},
      {"spec", {{"nodeName", node}, {"containers", nlohmann::json::array({{{"name", "big"}}})}}}};
}

struct Recorder {
  std::vector<std::string> events;
  InformerHandlers<PodInfo> Handlers() {
    return {[this](const std::string& key, const PodInfo& p) {
              events.push_back("upsert " + key + " " + p.node);
            },
            [this](const std::string& key) { events.push_back("delete " + key); }};
  }
};

Config Unused() {
  Config c;
  c.server = "https://127.0.0.1:9";
  return c;
}

PodInfo NodeOf(const nlohmann::json& pod) {
  if (!pod.contains("spec")) throw std::invalid_argument("no spec");
  return {pod["spec"].value("nodeName", "")};
}

}  // namespace

TEST_CASE(
    "informer store: a list replaces the store, reporting deletions it missed and every present "
    "object") {
  Client client(Unused());
  Recorder rec;
  Informer<PodInfo> informer(client, {}, NodeOf, rec.Handlers());
  detail::ReflectorSink& sink = informer;

  CHECK_FALSE(informer.HasSynced());
  CHECK_FALSE(informer.WaitForSync(std::chrono::milliseconds(1)));
  sink.BeginList();
  sink.Listed("ns/a", Pod("a", "n1"));
  sink.Listed("ns/b", Pod("b", "n2"));
  sink.EndList();
  CHECK(informer.HasSynced());
  CHECK(informer.WaitForSync(std::chrono::milliseconds(1)));
  CHECK(rec.events == std::vector<std::string>{"upsert ns/a n1", "upsert ns/b n2"});
  REQUIRE(informer.Get("ns/a"));
  CHECK(informer.Get("ns/a")->node == "n1");
  CHECK_FALSE(informer.Get("ns/zzz"));

  rec.events.clear();
  sink.BeginList();
  sink.Listed("ns/b", Pod("b", "n3"));
  sink.Listed("ns/c", Pod("c", "n1"));
  sink.EndList();
  CHECK(rec.events == std::vector<std::string>{"delete ns/a", "upsert ns/b n3", "upsert ns/c n1"});
  const auto all = informer.List();
  REQUIRE(all.size() == 2);
  CHECK(all[0].first == "ns/b");
  CHECK(all[0].second.node == "n3");
  CHECK(all[1].first == "ns/c");
}

TEST_CASE("informer store: watch events update the store, unknown deletions are not reported") {
  Client client(Unused());
  Recorder rec;
  Informer<PodInfo> informer(client, {}, NodeOf, rec.Handlers());
  detail::ReflectorSink& sink = informer;
  sink.BeginList();
  sink.EndList();
  sink.Upserted("ns/a", Pod("a", "n1"));
  sink.Upserted("ns/a", Pod("a", "n2"));
  sink.Deleted("ns/a");
  sink.Deleted("ns/never-seen");
  CHECK(rec.events == std::vector<std::string>{"upsert ns/a n1", "upsert ns/a n2", "delete ns/a"});
  CHECK(informer.Size() == 0);
  // A transform that throws leaves the store as it was (the reflector logs it).
  CHECK_THROWS(sink.Upserted("ns/x", nlohmann::json{{"metadata", {{"name", "x"}}}}));
  CHECK(informer.Size() == 0);
}
