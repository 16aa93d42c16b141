#include "gm/kube/workqueue.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using gm::kube::RateLimiter;
using gm::kube::RateLimiterOptions;
using gm::kube::WorkQueue;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

namespace {

RateLimiterOptions NoBucket(milliseconds base, milliseconds max) {
  RateLimiterOptions o;
  o.base_delay = base;
  o.max_delay = max;
  o.qps = 0;  // per-item backoff only
  return o;
}

}  // namespace

TEST_CASE("work queue: a key is queued once however often it is added") {
  WorkQueue q;
  q.Add("ns/a");
  q.Add("ns/a");
  q.Add("ns/b");
  CHECK(q.Len() == 2);
  std::string key;
  REQUIRE(q.Get(key));
  CHECK(key == "ns/a");
  REQUIRE(q.Get(key));
  CHECK(key == "ns/b");
  CHECK(q.Len() == 0);
}

TEST_CASE("work queue: a key re-added while processed is handed out again only after Done") {
  WorkQueue q;
  q.Add("a");
  std::string key;
  REQUIRE(q.Get(key));
  q.Add("a");
  q.Add("a");
  CHECK(q.Len() == 0);  // no second worker may get it now
  q.Done("a");
  CHECK(q.Len() == 1);
  REQUIRE(q.Get(key));
  CHECK(key == "a");
  q.Done("a");
  CHECK(q.Len() == 0);
}

TEST_CASE("work queue: ShutDown wakes a blocked Get, queued keys drain, later adds are dropped") {
  WorkQueue q;
  std::atomic<bool> returned{false};
  bool got = true;
  std::thread worker([&] {
    std::string key;
    got = q.Get(key);
    returned = true;
  });
  std::this_thread::sleep_for(milliseconds(50));
  CHECK_FALSE(returned);
  q.ShutDown();
  worker.join();
  CHECK_FALSE(got);
  CHECK(q.ShuttingDown());

  WorkQueue draining;
  draining.Add("left");
  draining.AddAfter("delayed", milliseconds(10));
  draining.ShutDown();
  draining.Add("late");
  std::string key;
  REQUIRE(draining.Get(key));
  CHECK(key == "left");
  CHECK_FALSE(draining.Get(key));
}

TEST_CASE("work queue: AddAfter hands the key out once due, the earliest of several delays wins") {
  WorkQueue q;
  const auto start = Clock::now();
  q.AddAfter("a", milliseconds(40));
  CHECK(q.Len() == 0);
  std::string key;
  REQUIRE(q.Get(key));
  CHECK(key == "a");
  CHECK(Clock::now() - start >= milliseconds(40));
  q.Done("a");

  const auto t = Clock::now();
  q.AddAfter("b", seconds(30));
  q.AddAfter("b", milliseconds(20));
  q.AddAfter("b", seconds(10));
  REQUIRE(q.Get(key));
  CHECK(key == "b");
  CHECK(Clock::now() - t < seconds(5));

  q.AddAfter("c", milliseconds(0));  // not positive: at once
  CHECK(q.Len() == 1);
}

TEST_CASE("work queue: a delayed add wakes a Get that is already waiting") {
  WorkQueue q;
  std::string key;
  std::thread adder([&] {
    std::this_thread::sleep_for(milliseconds(30));
    q.AddAfter("x", milliseconds(20));
  });
  const auto start = Clock::now();
  REQUIRE(q.Get(key));
  CHECK(key == "x");
  CHECK(Clock::now() - start >= milliseconds(50));
  adder.join();
}

TEST_CASE("rate limiter: per-item exponential backoff from the base to the cap, Forget resets") {
  RateLimiter limiter(NoBucket(milliseconds(5), seconds(1000)));
  CHECK(limiter.When("a") == milliseconds(5));
  CHECK(limiter.When("a") == milliseconds(10));
  CHECK(limiter.When("a") == milliseconds(20));
  CHECK(limiter.When("a") == milliseconds(40));
  CHECK(limiter.When("b") == milliseconds(5));  // per item
  CHECK(limiter.NumRequeues("a") == 4);
  limiter.Forget("a");
  CHECK(limiter.NumRequeues("a") == 0);
  CHECK(limiter.When("a") == milliseconds(5));

  RateLimiter capped(NoBucket(seconds(1), seconds(3)));
  CHECK(capped.When("k") == seconds(1));
  CHECK(capped.When("k") == seconds(2));
  CHECK(capped.When("k") == seconds(3));
  CHECK(capped.When("k") == seconds(3));
  for (int i = 0; i < 2000; ++i) capped.When("k");  // 2^2000 must not overflow
  CHECK(capped.When("k") == seconds(3));
}

TEST_CASE("rate limiter: the delay is the larger of the item's backoff and the overall bucket") {
  RateLimiterOptions o;
  o.base_delay = milliseconds(5);
  o.max_delay = seconds(1000);
  o.qps = 10;
  o.burst = 2;
  RateLimiter limiter(o);
  const auto now = Clock::now();
  CHECK(limiter.When("a", now) == milliseconds(5));
  CHECK(limiter.When("b", now) == milliseconds(5));
  CHECK(limiter.When("c", now) == milliseconds(100));  // the bucket is empty: 1/qps
  CHECK(limiter.When("d", now) == milliseconds(200));
  // The defaults are client-go's: 5 ms to 1000 s per item, 10 qps / 100 burst overall.
  const RateLimiterOptions defaults;
  CHECK(defaults.base_delay == milliseconds(5));
  CHECK(defaults.max_delay == seconds(1000));
  CHECK(defaults.qps == 10);
  CHECK(defaults.burst == 100);
}

TEST_CASE("work queue: AddRateLimited counts requeues until Forget") {
  WorkQueue q(NoBucket(milliseconds(1), milliseconds(10)));
  std::string key;
  for (int i = 1; i <= 3; ++i) {
    q.AddRateLimited("k");
    REQUIRE(q.Get(key));
    CHECK(key == "k");
    q.Done(key);
    CHECK(q.NumRequeues("k") == i);
  }
  q.Forget("k");
  CHECK(q.NumRequeues("k") == 0);
}
