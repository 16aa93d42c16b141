#pragma once

#include <unistd.h>

#include <utility>

namespace gm {

/// The one owner of a raw file descriptor (socket, eventfd, timerfd, memfd):
/// move-only, closes what it holds on destruction and on Reset. -1 means
/// "holds nothing".
///
/// close(2) is called exactly once and never retried on EINTR: on Linux the
/// descriptor is released even when close is interrupted, so a retry could
/// close a descriptor another thread has just been given. Errors from close
/// are ignored: the descriptor is gone either way, and every owner here
/// checks its writes where they happen, not at close.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { Close(fd_); }

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }

  /// The descriptor, still owned by this object (-1 if none).
  int get() const noexcept { return fd_; }
  /// Whether a descriptor is held.
  explicit operator bool() const noexcept { return fd_ >= 0; }

  /// Closes the held descriptor (if any) and takes `fd` (-1: hold nothing).
  void Reset(int fd = -1) noexcept {
    const int old = std::exchange(fd_, fd);
    if (old != fd) Close(old);
  }
  /// Gives up ownership without closing: the caller now owns the result.
  [[nodiscard]] int Release() noexcept { return std::exchange(fd_, -1); }

 private:
  static void Close(int fd) noexcept {
    if (fd >= 0) static_cast<void>(::close(fd));
  }

  int fd_ = -1;
};

}  // namespace gm
