#pragma once
// A token bucket shared by the requests of one client, and by the retries of
// a work queue (client-go's flowcontrol and BucketRateLimiter).

#include <atomic>
#include <chrono>
#include <mutex>

namespace gm::kube {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  /// `qps` tokens a second, at most `burst` saved up (the bucket starts
  /// full). qps <= 0 means no limit; burst < 1 counts as 1.
  TokenBucket(double qps, int burst);

  /// Takes a token now and returns how long to wait before using it: zero
  /// when one was saved up. Reservations queue behind each other, like
  /// golang.org/x/time/rate's Reserve().Delay().
  Clock::duration Reserve(Clock::time_point now = Clock::now());

  /// Takes a token, sleeping until it is due. Returns false, without
  /// waiting further, as soon as one of the given stop flags is raised.
  bool Wait(const std::atomic<bool>* stop = nullptr, const std::atomic<bool>* stop2 = nullptr);

 private:
  std::mutex mu_;
  const double qps_;
  const double burst_;
  double tokens_;
  Clock::time_point last_{};
};

}  // namespace gm::kube
