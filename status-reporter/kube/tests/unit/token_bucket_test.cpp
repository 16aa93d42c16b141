#include "gm/kube/token_bucket.h"

#include <doctest/doctest.h>

#include <thread>

using gm::kube::TokenBucket;
using std::chrono::milliseconds;

TEST_CASE("token bucket: a full burst at once, then one token per 1/qps, queued") {
  TokenBucket bucket(10, 3);
  const auto t0 = TokenBucket::Clock::now();
  CHECK(bucket.Reserve(t0) == milliseconds(0));
  CHECK(bucket.Reserve(t0) == milliseconds(0));
  CHECK(bucket.Reserve(t0) == milliseconds(0));
  CHECK(bucket.Reserve(t0) == milliseconds(100));
  CHECK(bucket.Reserve(t0) == milliseconds(200));
  // 300 ms later the two reservations are paid off and one token has built up.
  CHECK(bucket.Reserve(t0 + milliseconds(300)) == milliseconds(0));
  CHECK(bucket.Reserve(t0 + milliseconds(300)) == milliseconds(100));
  // Idle time refills up to the burst, no further.
  const auto later = t0 + std::chrono::seconds(60);
  for (int i = 0; i < 3; ++i) CHECK(bucket.Reserve(later) == milliseconds(0));
  CHECK(bucket.Reserve(later) == milliseconds(100));
}

TEST_CASE("token bucket: qps <= 0 is unlimited, burst < 1 counts as 1") {
  TokenBucket unlimited(0, 0);
  for (int i = 0; i < 1000; ++i) REQUIRE(unlimited.Reserve() == milliseconds(0));
  TokenBucket one(1, 0);
  const auto t0 = TokenBucket::Clock::now();
  CHECK(one.Reserve(t0) == milliseconds(0));
  CHECK(one.Reserve(t0) == milliseconds(1000));
}

TEST_CASE("token bucket: Wait sleeps for its token, and a stop flag cuts the wait short") {
  TokenBucket bucket(20, 1);
  const auto start = std::chrono::steady_clock::now();
  CHECK(bucket.Wait());
  CHECK(bucket.Wait());
  CHECK(std::chrono::steady_clock::now() - start >= milliseconds(45));

  TokenBucket slow(0.1, 1);
  CHECK(slow.Wait());  // the burst
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(50));
    stop = true;
  });
  const auto t = std::chrono::steady_clock::now();
  CHECK_FALSE(slow.Wait(&stop));  // would take 10 s
  CHECK(std::chrono::steady_clock::now() - t < milliseconds(1000));
  stopper.join();
  CHECK_FALSE(slow.Wait(nullptr, &stop));
}
