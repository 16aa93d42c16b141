#include "small_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "gm/errno_text.h"
#include "gm/unique_fd.h"

namespace gm::exporter {

bool ReadBounded(int fd, size_t max_bytes, std::string& out, std::string& error) {
  out.clear();
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = gm::ErrnoText(errno);
      out.clear();
      return false;
    }
    if (n == 0) return true;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      error = "larger than " + std::to_string(max_bytes) + " bytes";
      out.clear();
      return false;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

bool ReadSmallFile(const std::string& path, size_t max_bytes, std::string& out,
                   std::string& error) {
  out.clear();
  const gm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    error = gm::ErrnoText(errno);
    return false;
  }
  return ReadBounded(fd.get(), max_bytes, out, error);
}

}  // namespace gm::exporter
