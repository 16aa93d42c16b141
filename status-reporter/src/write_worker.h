#pragma once
// The leader's writers: each worker takes a VMI key from the work queue,
// reconciles it while this replica leads, and hands the key back to the queue
// as done, to retry later, or forgotten. Only the leader writes, and a replica
// that stops leading waits for its writes in flight before it lets the Lease
// go, so that two leaders never write at once.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

namespace prometheus {
class Histogram;
}

namespace gm::reporter {

enum class Outcome;

/// The work queue as a worker uses it (gm::kube::WorkQueue in the binary).
class KeyQueue {
 public:
  virtual ~KeyQueue() = default;
  /// Blocks for the next key; false once the queue is shut down and empty.
  virtual bool Get(std::string& key) = 0;
  /// The key's processing ended (always called after Get).
  virtual void Done(const std::string& key) = 0;
  /// Clears the key's failure count (done, or given up).
  virtual void Forget(const std::string& key) = 0;
  /// Queues the key again after its backoff.
  virtual void AddRateLimited(const std::string& key) = 0;
};

/// Admits writes only while this replica leads, and counts those in flight.
/// The leader check and the count share one lock: once IsLeader() answers
/// false, WaitIdle sees every write that got in before.
class WriteGate {
 public:
  explicit WriteGate(std::function<bool()> is_leader) : is_leader_(std::move(is_leader)) {}
  /// True (and counted) when this replica leads; then Leave must follow.
  bool Enter();
  void Leave();
  /// Blocks until no write admitted by Enter is in flight.
  void WaitIdle();
  int in_flight() const;

 private:
  const std::function<bool()> is_leader_;
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  int in_flight_ = 0;
};

/// Processes keys until the queue is shut down. A key that arrives while
/// this replica does not lead is dropped: the new leader relists and queues
/// every VMI that has a report. `duration` (may be null) observes each
/// reconcile in seconds.
void RunWriteWorker(KeyQueue& queue, WriteGate& gate,
                    const std::function<Outcome(const std::string& key)>& reconcile,
                    prometheus::Histogram* duration);

}  // namespace gm::reporter
