#include "gm/kube/backoff.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using gm::kube::Backoff;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE(
    "backoff: each wait lies between d and twice d, d doubles up to the maximum, Reset starts "
    "over") {
  Backoff b(seconds(1), seconds(4));
  for (const auto d : {seconds(1), seconds(2), seconds(4), seconds(4)}) {
    const auto wait = b.Next();
    CHECK(wait >= d);
    CHECK(wait < 2 * d);
  }
  b.Reset();
  const auto wait = b.Next();
  CHECK(wait >= seconds(1));
  CHECK(wait < seconds(2));
}

TEST_CASE("a background poller's sleep ends early, within its slice, once stop is raised") {
  std::atomic<bool> stop{false};
  CHECK(gm::kube::SleepUnlessStopped(milliseconds(1), stop));
  std::thread raise([&stop] {
    std::this_thread::sleep_for(milliseconds(50));
    stop = true;
  });
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(gm::kube::SleepUnlessStopped(std::chrono::minutes(5), stop));
  raise.join();
  // 200 ms slices; seconds of slack for a loaded machine, minutes if it ignored stop.
  CHECK(std::chrono::steady_clock::now() - start < seconds(5));
}
