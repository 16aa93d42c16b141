#pragma once
// The bearer token to send. A token file is re-read as it rotates (projected
// service-account tokens are replaced by the kubelet before they expire).

#include <chrono>
#include <ctime>
#include <mutex>
#include <string>

namespace gm::kube::detail {

class TokenSource {
 public:
  /// Without `file`, `token` is used as is. With it, the file's content is
  /// used and `token` only if the file cannot be read at first. Throws
  /// std::invalid_argument when neither gives a token.
  TokenSource(std::string token, std::string file,
              std::chrono::steady_clock::duration max_age = std::chrono::minutes(1));

  /// The current token. The file is read again when its mtime changed, when
  /// the last read is older than `max_age` (client-go's cached token source
  /// re-reads once a minute) or when `force` (after a 401).
  std::string Token(bool force = false);

 private:
  bool ReadLocked();

  std::mutex mu_;
  std::string token_;
  const std::string file_;
  const std::chrono::steady_clock::duration max_age_;
  std::chrono::steady_clock::time_point read_at_{};
  timespec mtime_{};
};

}  // namespace gm::kube::detail
