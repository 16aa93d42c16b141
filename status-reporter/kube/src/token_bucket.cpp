#include "gm/kube/token_bucket.h"

#include <algorithm>

#include "detail/stop.h"

namespace gm::kube {

TokenBucket::TokenBucket(double qps, int burst)
    : qps_(qps), burst_(std::max(burst, 1)), tokens_(std::max(burst, 1)) {}

TokenBucket::Clock::duration TokenBucket::Reserve(Clock::time_point now) {
  if (qps_ <= 0) return Clock::duration::zero();
  std::lock_guard<std::mutex> lock(mu_);
  if (now > last_) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * qps_);
    last_ = now;
  }
  // A negative balance is the queue of reservations already handed out.
  tokens_ -= 1;
  if (tokens_ >= 0) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(-tokens_ / qps_));
}

bool TokenBucket::Wait(const std::atomic<bool>* stop, const std::atomic<bool>* stop2) {
  if (detail::AnyStopped({stop, stop2})) return false;
  const auto delay = Reserve();
  return delay <= Clock::duration::zero() || detail::SleepUnlessStopped(delay, {stop, stop2});
}

}  // namespace gm::kube
