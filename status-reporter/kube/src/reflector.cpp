#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "detail/stop.h"
#include "gm/kube/backoff.h"
#include "gm/kube/informer.h"

namespace gm::kube::detail {
namespace {

using Clock = std::chrono::steady_clock;

std::string MetadataString(const nlohmann::json& object, const char* field) {
  const auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  const auto value = meta->find(field);
  return value != meta->end() && value->is_string() ? value->get<std::string>() : "";
}

// A watch that ends sooner than this without an event counts as a failure
// (client-go's "very short watch"), so a server that closes at once is not hammered.
constexpr std::chrono::seconds kMinHealthyWatch{1};

}  // namespace

Reflector::Reflector(Client& client, InformerOptions options, ReflectorSink& sink)
    : client_(client), options_(std::move(options)), sink_(sink) {}

std::string Reflector::ResourceVersion() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resource_version_;
}

void Reflector::SetResourceVersion(std::string rv) {
  std::lock_guard<std::mutex> lock(mu_);
  resource_version_ = std::move(rv);
}

Query Reflector::Selectors() const {
  Query q;
  if (!options_.label_selector.empty()) q["labelSelector"] = options_.label_selector;
  if (!options_.field_selector.empty()) q["fieldSelector"] = options_.field_selector;
  return q;
}

void Reflector::Run(const std::atomic<bool>& stop) {
  Backoff backoff(options_.backoff_initial, options_.backoff_max);
  bool relist = true;
  while (!stop) {
    progressed_ = false;
    const bool listing = relist;
    try {
      if (relist) {
        List(stop);
        relist = false;
        backoff.Reset();
      }
      WatchOnce(stop);
      if (progressed_) {
        backoff.Reset();
        continue;  // the server ended a healthy watch (timeoutSeconds): resume at once
      }
    } catch (const Gone& e) {
      // The resourceVersion (or a list's continue token) is compacted away:
      // only a fresh list can restore a consistent view.
      spdlog::info("kube informer {}: {}; relisting", options_.path, e.what());
      relist = true;
      if (!listing) continue;
    } catch (const Cancelled&) {
      break;
    } catch (const std::exception& e) {
      spdlog::warn("kube informer {}: {}{}", options_.path,
                   listing ? "list failed: " : "watch failed: ", e.what());
      if (progressed_) backoff.Reset();
    }
    if (!SleepUnlessStopped(backoff.Next(), {&stop})) break;
  }
}

void Reflector::List(const std::atomic<bool>& stop) {
  Query query = Selectors();
  query["limit"] = std::to_string(std::max(options_.page_size, 1));
  sink_.BeginList();
  std::string rv;
  for (;;) {
    RequestSpec spec;
    spec.path = options_.path;
    spec.query = query;
    spec.stop = &stop;
    const Response r = client_.Request(spec);
    auto page = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    const auto items = page.is_object() ? page.find("items") : page.end();
    if (!page.is_object() || items == page.end() || !(items->is_array() || items->is_null())) {
      throw std::runtime_error("the list answer is not a list");
    }
    // Every page is served from the first page's snapshot, with its version.
    rv = MetadataString(page, "resourceVersion");
    if (items->is_array()) {
      for (const auto& item : *items) {
        try {
          sink_.Listed(ObjectKey(item), item);
        } catch (const std::exception& e) {
          spdlog::warn("kube informer {}: skipping a listed object: {}", options_.path, e.what());
        }
      }
    }
    const std::string next = MetadataString(page, "continue");
    if (next.empty()) break;
    query["continue"] = next;
  }
  if (rv.empty()) throw std::runtime_error("the list answer has no resourceVersion");
  sink_.EndList();
  SetResourceVersion(rv);
}

void Reflector::WatchOnce(const std::atomic<bool>& stop) {
  Query query = Selectors();
  query["resourceVersion"] = ResourceVersion();
  query["allowWatchBookmarks"] = "true";
  // A random length per watch spreads the reconnects of many clients.
  static thread_local std::mt19937 rng(std::random_device{}());
  const auto min_timeout = std::max<long long>(options_.min_watch_timeout.count(), 1);
  query["timeoutSeconds"] = std::to_string(
      std::uniform_int_distribution<long long>(min_timeout, 2 * min_timeout - 1)(rng));
  const auto start = Clock::now();
  client_.Watch(
      options_.path, query,
      [this](const std::string& type, const nlohmann::json& object) {
        OnEvent(type, object);
        return true;
      },
      stop);
  if (Clock::now() - start >= kMinHealthyWatch) progressed_ = true;
}

void Reflector::OnEvent(const std::string& type, const nlohmann::json& object) {
  progressed_ = true;
  std::string rv = MetadataString(object, "resourceVersion");
  // Bookmarks carry nothing but a newer version to resume from.
  if (type != "BOOKMARK") {
    try {
      const std::string key = ObjectKey(object);
      if (type == "ADDED" || type == "MODIFIED") {
        sink_.Upserted(key, object);
      } else if (type == "DELETED") {
        sink_.Deleted(key);
      } else {
        spdlog::warn("kube informer {}: ignoring a watch event of type {}", options_.path, type);
      }
    } catch (const std::exception& e) {
      spdlog::warn("kube informer {}: skipping a {} event: {}", options_.path, type, e.what());
    }
  }
  if (!rv.empty()) SetResourceVersion(std::move(rv));
}

}  // namespace gm::kube::detail
