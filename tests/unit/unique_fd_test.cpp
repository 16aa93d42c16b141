#include "gm/unique_fd.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

using gm::UniqueFd;

namespace {

// Whether `fd` is an open descriptor of this process. Each doctest case runs
// in its own process, so no other thread can reuse a number in between.
bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

struct Pipe {
  int r = -1;
  int w = -1;
  Pipe() {
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    r = fds[0];
    w = fds[1];
  }
};

}  // namespace

TEST_CASE("a UniqueFd closes its descriptor when it goes out of scope") {
  const Pipe p;
  {
    const UniqueFd r(p.r);
    const UniqueFd w(p.w);
    CHECK(r.get() == p.r);
    CHECK(static_cast<bool>(r));
    CHECK(IsOpen(p.r));
  }
  CHECK_FALSE(IsOpen(p.r));
  CHECK_FALSE(IsOpen(p.w));
}

TEST_CASE("an empty UniqueFd holds -1 and closes nothing") {
  const UniqueFd none;
  CHECK(none.get() == -1);
  CHECK_FALSE(static_cast<bool>(none));
  const UniqueFd failed(-1);  // what socket(2) returns on failure
  CHECK_FALSE(static_cast<bool>(failed));
}

TEST_CASE("Reset closes the old descriptor and takes the new one") {
  const Pipe p;
  UniqueFd fd(p.r);
  fd.Reset(p.w);
  CHECK_FALSE(IsOpen(p.r));
  CHECK(fd.get() == p.w);
  fd.Reset(p.w);  // the same descriptor again: kept, not closed under the owner
  CHECK(IsOpen(p.w));
  fd.Reset();
  CHECK_FALSE(IsOpen(p.w));
  CHECK(fd.get() == -1);
}

TEST_CASE("Release hands the descriptor over without closing it") {
  const Pipe p;
  int released = -1;
  {
    UniqueFd fd(p.r);
    released = fd.Release();
    CHECK(fd.get() == -1);
  }
  CHECK(released == p.r);
  CHECK(IsOpen(p.r));
  const UniqueFd cleanup_r(p.r);
  const UniqueFd cleanup_w(p.w);
}

TEST_CASE("moving a UniqueFd moves ownership and closes the target's old descriptor") {
  const Pipe p;
  UniqueFd a(p.r);
  UniqueFd b(std::move(a));
  CHECK(a.get() == -1);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  CHECK(b.get() == p.r);
  UniqueFd c(p.w);
  c = std::move(b);
  CHECK_FALSE(IsOpen(p.w));
  CHECK(c.get() == p.r);
  CHECK(IsOpen(p.r));
}
