#pragma once
// Informers: a local copy of one kind of object, kept current with
// client-go's reflector semantics (LIST in pages, then WATCH from the list's
// resourceVersion with bookmarks; resume after a dropped stream; relist on
// 410 Gone). Each object is reduced by a transform to the small struct the
// caller needs, so the JSON is never kept.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gm/kube/client.h"
#include "gm/kube/paths.h"

namespace gm::kube {

struct InformerOptions {
  std::string path;  ///< the collection, e.g. CollectionPath("v1", "pods") for all namespaces
  std::string label_selector;
  std::string field_selector;
  int page_size = 500;                          ///< LIST limit; the pages follow `continue`
  std::chrono::seconds min_watch_timeout{300};  ///< each watch asks timeoutSeconds in [min, 2 min)
  std::chrono::milliseconds backoff_initial{
      800};                                      ///< wait after a failed list or watch, doubled ...
  std::chrono::milliseconds backoff_max{30000};  ///< ... up to this
};

namespace detail {

/// Where a reflector delivers what it lists and watches.
class ReflectorSink {
 public:
  virtual ~ReflectorSink() = default;
  virtual void BeginList() = 0;
  virtual void Listed(const std::string& key, const nlohmann::json& object) = 0;
  /// The listed objects replace the store.
  virtual void EndList() = 0;
  virtual void Upserted(const std::string& key, const nlohmann::json& object) = 0;
  virtual void Deleted(const std::string& key) = 0;
};

/// LIST + WATCH for one collection; the non-template half of an Informer.
class Reflector {
 public:
  Reflector(Client& client, InformerOptions options, ReflectorSink& sink);
  /// Lists and watches until `stop` is raised.
  void Run(const std::atomic<bool>& stop);
  /// The last resourceVersion seen: from the list, an event or a bookmark.
  std::string ResourceVersion() const;

 private:
  Query Selectors() const;
  void List(const std::atomic<bool>& stop);
  void WatchOnce(const std::atomic<bool>& stop);
  void OnEvent(const std::string& type, const nlohmann::json& object);
  void SetResourceVersion(std::string rv);

  Client& client_;
  const InformerOptions options_;
  ReflectorSink& sink_;
  bool progressed_ = false;  // the current watch delivered something
  mutable std::mutex mu_;
  std::string resource_version_;
};

}  // namespace detail

template <typename T>
struct InformerHandlers {
  /// An object appeared or changed; after a relist, called for every object.
  std::function<void(const std::string& key, const T& object)> on_upsert;
  /// An object is gone; after a relist, called for every key the list lacks.
  std::function<void(const std::string& key)> on_delete;
};

/// Keys are "namespace/name" ("name" for cluster-scoped kinds). Handlers
/// run on the thread that calls Run, after the store is updated; they
/// should be quick (enqueue the key) and may read the informer. The
/// ReflectorSink base is the reflector's door into the store (and the
/// unit tests'); other callers have no use for it.
template <typename T>
class Informer final : public detail::ReflectorSink {
 public:
  /// Reduces an object to what the caller keeps. An object it throws on is
  /// logged and left out (or keeps its previous value).
  using Transform = std::function<T(const nlohmann::json& object)>;

  Informer(Client& client, InformerOptions options, Transform transform,
           InformerHandlers<T> handlers = {})
      : transform_(std::move(transform)),
        handlers_(std::move(handlers)),
        reflector_(client, std::move(options), *this) {}

  /// Lists and watches until `stop` is raised; run it on its own thread.
  void Run(const std::atomic<bool>& stop) { reflector_.Run(stop); }

  /// True once the first list is in the store.
  bool HasSynced() const {
    std::lock_guard<std::mutex> lock(mu_);
    return synced_;
  }
  bool WaitForSync(std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    return synced_cv_.wait_for(lock, timeout, [this] { return synced_; });
  }

  std::optional<T> Get(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = store_.find(key);
    if (it == store_.end()) return std::nullopt;
    return it->second;
  }
  /// A snapshot, in key order.
  std::vector<std::pair<std::string, T>> List() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {store_.begin(), store_.end()};
  }
  /// Calls `f` with the store (key order) under the lock, and returns what
  /// `f` returns: a read without List's copy, for readers of every object.
  /// `f` must be quick and must not call this informer: updates wait.
  template <typename F>
  auto Read(F f) const {
    std::lock_guard<std::mutex> lock(mu_);
    return f(std::as_const(store_));
  }
  std::size_t Size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return store_.size();
  }
  std::string LastSyncResourceVersion() const { return reflector_.ResourceVersion(); }

 private:
  // Only the Run thread writes the store, so it may read the store without
  // the lock; readers on other threads take the lock.
  void BeginList() override { listed_.clear(); }

  void Listed(const std::string& key, const nlohmann::json& object) override {
    listed_.insert_or_assign(key, transform_(object));
  }

  void EndList() override {
    std::vector<std::string> gone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& entry : store_) {
        if (!listed_.count(entry.first)) gone.push_back(entry.first);
      }
      store_.swap(listed_);
      synced_ = true;
    }
    listed_.clear();
    synced_cv_.notify_all();
    // Like a DeltaFIFO Replace: deletions missed while disconnected, then
    // every present object.
    for (const auto& key : gone) {
      if (handlers_.on_delete) handlers_.on_delete(key);
    }
    for (const auto& [key, value] : store_) {
      if (handlers_.on_upsert) handlers_.on_upsert(key, value);
    }
  }

  void Upserted(const std::string& key, const nlohmann::json& object) override {
    T value = transform_(object);
    {
      std::lock_guard<std::mutex> lock(mu_);
      store_.insert_or_assign(key, value);
    }
    if (handlers_.on_upsert) handlers_.on_upsert(key, value);
  }

  void Deleted(const std::string& key) override {
    bool erased;
    {
      std::lock_guard<std::mutex> lock(mu_);
      erased = store_.erase(key) > 0;
    }
    if (erased && handlers_.on_delete) handlers_.on_delete(key);
  }

  const Transform transform_;
  const InformerHandlers<T> handlers_;
  mutable std::mutex mu_;
  mutable std::condition_variable synced_cv_;
  std::map<std::string, T> store_;
  bool synced_ = false;
  std::map<std::string, T> listed_;  // the list in progress (Run thread only)
  detail::Reflector reflector_;
};

}  // namespace gm::kube
