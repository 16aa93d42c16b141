#pragma once
// An in-process watchdog. The injected sidecar has no liveness probe (an exec
// of this libvirt-linked binary costs ~50 ms of CPU per run, multiplied by
// every VM), so the process itself exits when one of its threads is stuck
// beyond a bound, and the kubelet restarts the container.
//
// Its cost: one thread that sleeps, waking once per `period` (30 s by
// default) to read two timestamps and post one ping to the server thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace gm::exporter {

using WatchdogClock = std::chrono::steady_clock;

/// A thread the watchdog watches.
struct WatchedThread {
  std::string name;  // for the log line: "serving thread", "polling thread"
  WatchdogClock::duration bound;
  /// How long the thread has been stuck in one step at `now`; zero when it is
  /// not in a step (waiting for work is not being stuck).
  std::function<WatchdogClock::duration(WatchdogClock::time_point now)> stuck_for;
  /// Runs after each check (e.g. sends the next ping); may be empty.
  std::function<void(WatchdogClock::time_point now)> after_check;
};

struct StuckThread {
  std::string name;
  WatchdogClock::duration stuck_for;
  WatchdogClock::duration bound;
};

/// For a thread that runs posted work (the HTTP server's event loop): each
/// round posts a ping; the age of the oldest unanswered ping is how long the
/// thread has been stuck. An idle loop answers at once, so idle is not stuck.
class PingHeartbeat {
 public:
  using Post = std::function<void(std::function<void()>)>;
  explicit PingHeartbeat(Post post) : post_(std::move(post)) {}
  void Ping(WatchdogClock::time_point now);
  WatchdogClock::duration StuckFor(WatchdogClock::time_point now) const;

 private:
  Post post_;
  std::atomic<int64_t> pending_since_ns_{0};  // 0: no ping unanswered
};

class Watchdog {
 public:
  using Clock = std::function<WatchdogClock::time_point()>;
  using OnStuck = std::function<void(const StuckThread&)>;

  Watchdog(
      std::vector<WatchedThread> threads, WatchdogClock::duration period, OnStuck on_stuck,
      Clock clock = [] { return WatchdogClock::now(); });
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  /// One round: the first thread stuck beyond its bound, if any; then each
  /// thread's after_check. The thread started by Start() calls this.
  std::optional<StuckThread> Check();
  /// Checks every `period` on a thread of its own and calls on_stuck (once)
  /// when a thread is stuck; on_stuck is expected to end the process.
  void Start();
  void Stop();

 private:
  std::vector<WatchedThread> threads_;
  WatchdogClock::duration period_;
  OnStuck on_stuck_;
  Clock clock_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace gm::exporter
