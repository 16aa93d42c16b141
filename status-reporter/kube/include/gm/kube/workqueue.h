#pragma once
// A rate-limited work queue of object keys, like client-go's workqueue:
// event handlers Add keys, workers Get one, reconcile, then Forget it (on
// success) or AddRateLimited it (on a transient error), and always Done it.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "gm/kube/token_bucket.h"

namespace gm::kube {

struct RateLimiterOptions {
  std::chrono::milliseconds base_delay{
      5};  ///< first retry delay of an item, doubled per failure ...
  std::chrono::milliseconds max_delay{1000000};  ///< ... up to this (1000 s)
  double qps = 10;                               ///< overall retry rate of the queue
  int burst = 100;
};

/// client-go's DefaultControllerRateLimiter: an item waits the longer of
/// its own exponential backoff and a token from a bucket shared by all items.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateLimiter(RateLimiterOptions options = {});

  /// How long `key` waits before its next try; counts one more failure.
  Clock::duration When(const std::string& key, Clock::time_point now = Clock::now());
  /// Clears the failures of `key` (it succeeded or was given up).
  void Forget(const std::string& key);
  int NumRequeues(const std::string& key) const;

 private:
  const RateLimiterOptions options_;
  TokenBucket bucket_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> failures_;
};

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;
  explicit WorkQueue(RateLimiterOptions options = {});

  /// Queues `key` unless it is queued already. A key being processed is
  /// queued again when it is Done, so no two workers hold the same key.
  void Add(const std::string& key);
  /// Adds `key` once `delay` has passed (at once when not positive). Of
  /// several pending delays for one key, the earliest wins.
  void AddAfter(const std::string& key, Clock::duration delay);
  /// Adds `key` after the rate limiter's delay for it.
  void AddRateLimited(const std::string& key);
  /// Clears the failure count of `key`.
  void Forget(const std::string& key);
  /// How many times `key` was AddRateLimited since it was last forgotten.
  int NumRequeues(const std::string& key) const;

  /// Blocks until a key is ready and hands it out; the caller must call
  /// Done(key) when finished. Returns false once ShutDown was called and no
  /// queued key is left (delayed keys are dropped at shutdown).
  bool Get(std::string& key);
  void Done(const std::string& key);

  /// Wakes every Get; later adds are ignored.
  void ShutDown();
  bool ShuttingDown() const;
  /// Keys ready to be handed out.
  std::size_t Len();

 private:
  void AddLocked(const std::string& key);
  void PromoteDueLocked(Clock::time_point now);

  RateLimiter limiter_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::unordered_set<std::string> dirty_;       // queued, or re-added while processing
  std::unordered_set<std::string> processing_;  // handed out, not Done yet
  // Delayed adds, by due time; `due_` finds a key's pending entry.
  std::set<std::pair<Clock::time_point, std::string>> waiting_;
  std::unordered_map<std::string, Clock::time_point> due_;
  bool shutting_down_ = false;
};

}  // namespace gm::kube
