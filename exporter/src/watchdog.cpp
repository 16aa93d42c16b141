#include "watchdog.h"

namespace gm::exporter {

namespace {
int64_t Ns(WatchdogClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

void PingHeartbeat::Ping(WatchdogClock::time_point now) {
  int64_t none = 0;
  // Only one ping in flight: while one is unanswered its age keeps growing.
  if (!pending_since_ns_.compare_exchange_strong(none, Ns(now))) return;
  post_([this] { pending_since_ns_ = 0; });
}

WatchdogClock::duration PingHeartbeat::StuckFor(WatchdogClock::time_point now) const {
  const int64_t since = pending_since_ns_;
  if (since == 0 || Ns(now) <= since) return WatchdogClock::duration::zero();
  return std::chrono::duration_cast<WatchdogClock::duration>(
      std::chrono::nanoseconds(Ns(now) - since));
}

Watchdog::Watchdog(std::vector<WatchedThread> threads, WatchdogClock::duration period,
                   OnStuck on_stuck, Clock clock)
    : threads_(std::move(threads)),
      period_(period),
      on_stuck_(std::move(on_stuck)),
      clock_(std::move(clock)) {}

Watchdog::~Watchdog() { Stop(); }

std::optional<StuckThread> Watchdog::Check() {
  const auto now = clock_();
  std::optional<StuckThread> stuck;
  for (const auto& t : threads_) {
    const auto d = t.stuck_for(now);
    if (d > t.bound) {
      stuck = StuckThread{t.name, d, t.bound};
      break;
    }
  }
  for (const auto& t : threads_) {
    if (t.after_check) t.after_check(now);
  }
  return stuck;
}

void Watchdog::Start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, period_, [this] { return stop_; })) {
      if (auto stuck = Check()) {
        on_stuck_(*stuck);
        return;
      }
    }
  });
}

void Watchdog::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace gm::exporter
