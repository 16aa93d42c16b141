#pragma once
// Owns the libvirt connection and the two threads that use it: libvirt's event
// loop (keepalive, close and domain events) and the poll loop that reads guest
// load into the cache. Nothing here is called from a scrape except the
// lock-free accessors at the bottom.

#include <libvirt/libvirt.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "exposition.h"
#include "gm/unique_fd.h"
#include "hypervisor.h"
#include "identity.h"
#include "load_cache.h"

namespace gm::exporter {

struct PollerConfig {
  std::string uri;
  std::chrono::seconds interval{120};
  int agent_timeout_seconds = 5;
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::seconds max_backoff{30};
  // Client-side keepalive: with no message from libvirt for interval seconds
  // a probe is sent, and the connection is dropped after count unanswered
  // ones, i.e. about interval * (count + 1) seconds (120 s) after a daemon
  // froze. The daemon pings on its own schedule too (virtqemud's
  // keepalive_interval, 5 s by default) and each ping resets our timer, so
  // our probes matter only when the daemon stops talking: a short interval
  // buys quicker dead-peer detection with wake-ups of its own, while the
  // cache keeps scrapes answering and --max-sample-age removes old samples.
  int keepalive_interval_seconds = 30;
  unsigned keepalive_count = 3;
  std::chrono::seconds call_deadline{30};  // a libvirt call running longer counts as hung
  std::optional<Identity> identity;        // set by the injector in a launcher pod
  std::function<void()> on_change;         // after each poll and each domain event
};

class Poller {
 public:
  Poller(PollerConfig config, LoadCache& cache, SelfMetrics& metrics);
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  void Start();
  void Stop();

  /// Counts, once per call, a libvirt call that has run longer than `deadline`.
  /// Called from the server thread at each /metrics render and when
  /// hang_timer_fd() fires.
  void CheckHung(std::chrono::steady_clock::duration deadline);

  /// A timerfd armed for call_deadline while a libvirt call runs and disarmed
  /// when it returns (arming is a syscall, not a wake-up): it becomes readable
  /// only when a call hangs, so hang detection costs an idle sidecar nothing.
  int hang_timer_fd() const { return hang_timer_fd_.get(); }
  /// Drains hang_timer_fd() and runs CheckHung(call_deadline).
  void OnHangTimer();
  /// How long the libvirt call in flight (connects included) has run at
  /// `now`; zero between calls. The watchdog's view of the polling thread:
  /// waiting for the next poll or for a reconnect is not being stuck.
  std::chrono::steady_clock::duration CallRunningFor(
      std::chrono::steady_clock::time_point now) const {
    const int64_t started = call_started_ns_;
    if (started == 0) return std::chrono::steady_clock::duration::zero();
    return std::max(now.time_since_epoch() - std::chrono::steady_clock::duration(started),
                    std::chrono::steady_clock::duration::zero());
  }

 private:
  void EventLoop();
  void PollLoop();
  bool Connect();
  void Disconnect();
  void PollOnce();
  void MarkDue(const std::string& domain);
  void WaitFor(std::chrono::steady_clock::duration d);
  void WaitBeforeReconnect(std::chrono::steady_clock::duration d);
  std::chrono::steady_clock::duration Jittered(std::chrono::steady_clock::duration backoff);
  void CallBegins();
  void CallEnds();

  static void OnClose(virConnectPtr, int reason, void* opaque);
  static int OnLifecycle(virConnectPtr, virDomainPtr, int event, int detail, void* opaque);
  static void OnAgentLifecycle(virConnectPtr, virDomainPtr, int state, int reason, void* opaque);

  const PollerConfig config_;
  LoadCache& cache_;
  SelfMetrics& metrics_;

  std::thread event_thread_;
  std::thread poll_thread_;
  std::atomic<bool> stop_{false};
  int wake_timer_ = -1;

  std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  bool connection_lost_ = false;
  std::set<std::string> due_;  // domains to read now (events)

  // Poll thread only.
  virConnectPtr conn_ = nullptr;
  std::unique_ptr<Hypervisor> hv_;
  LoadMethod method_ = LoadMethod::kGuestInfo;
  int lifecycle_cb_ = -1;
  int agent_cb_ = -1;
  std::map<std::string, std::chrono::steady_clock::time_point> next_read_;
  std::minstd_rand rng_{
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count())};
  // The current burst of failed connects (0: connected or never tried).
  static constexpr std::chrono::minutes kFailureReminder{10};
  uint64_t failed_attempts_ = 0;
  std::chrono::steady_clock::time_point first_failure_{};
  std::chrono::steady_clock::time_point last_failure_log_{};

  // Hang detection: start of the libvirt call in flight (0 when none).
  std::atomic<int64_t> call_started_ns_{0};
  std::atomic<int64_t> hung_counted_for_ns_{0};
  UniqueFd hang_timer_fd_;
};

}  // namespace gm::exporter
