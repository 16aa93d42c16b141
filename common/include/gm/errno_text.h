#pragma once

#include <cstring>
#include <string>

namespace gm {

/// The text of an errno value ("Connection refused"), safe to call from any
/// thread: std::strerror may share one buffer between threads (clang-tidy's
/// concurrency-mt-unsafe); the GNU strerror_r used here does not.
inline std::string ErrnoText(int err) {
  char buf[256];
  return ::strerror_r(err, buf, sizeof buf);  // GNU form: the message, in buf or static
}

}  // namespace gm
