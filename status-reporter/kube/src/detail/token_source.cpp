#include "detail/token_source.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace gm::kube::detail {
namespace {

bool SameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

TokenSource::TokenSource(std::string token, std::string file,
                         std::chrono::steady_clock::duration max_age)
    : token_(std::move(token)), file_(std::move(file)), max_age_(max_age) {
  if (!file_.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ReadLocked() && token_.empty()) {
      throw std::invalid_argument("cannot read a bearer token from " + file_);
    }
  }
}

bool TokenSource::ReadLocked() {
  // Failures are remembered too (time and mtime), so a bad file is retried
  // when it changes or ages rather than on every request.
  read_at_ = std::chrono::steady_clock::now();
  struct stat st {};
  if (::stat(file_.c_str(), &st) == 0) mtime_ = st.st_mtim;
  std::ifstream in(file_);
  if (!in) {
    spdlog::warn("kube: cannot read the token file {}; keeping the previous token", file_);
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  token.erase(token.find_last_not_of(" \t\r\n") + 1);
  token.erase(0, token.find_first_not_of(" \t\r\n"));
  if (token.empty()) {
    // A writer that truncates before writing can be caught in between.
    spdlog::warn("kube: the token file {} is empty; keeping the previous token", file_);
    return false;
  }
  token_ = std::move(token);
  return true;
}

std::string TokenSource::Token(bool force) {
  std::lock_guard<std::mutex> lock(mu_);
  if (file_.empty()) return token_;
  bool reread = force || std::chrono::steady_clock::now() - read_at_ >= max_age_;
  if (!reread) {
    struct stat st {};
    reread = ::stat(file_.c_str(), &st) == 0 && !SameTime(st.st_mtim, mtime_);
  }
  if (reread) ReadLocked();
  return token_;
}

}  // namespace gm::kube::detail
