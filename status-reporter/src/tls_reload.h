#pragma once
// The HTTPS listener's certificate, re-read when its files change, so that a
// renewed certificate (cert-manager rewrites the Secret, the kubelet updates
// the mounted files) is served without a restart. A file that does not load
// changes nothing: the last good certificate stays, with a warning.

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

namespace gm::reporter {

class ReloadingCertificate {
 public:
  /// Loads the pair once; throws std::runtime_error with what is wrong.
  ReloadingCertificate(std::string cert_file, std::string key_file,
                       std::chrono::milliseconds check_interval = std::chrono::seconds(2));
  ~ReloadingCertificate();
  ReloadingCertificate(const ReloadingCertificate&) = delete;
  ReloadingCertificate& operator=(const ReloadingCertificate&) = delete;

  /// Serves the current pair on `ctx` and on every handshake after a change.
  void Install(SSL_CTX* ctx);

  struct Pair;

 private:
  static int OnHandshake(SSL* ssl, void* self);
  std::shared_ptr<const Pair> Current();

  const std::string cert_file_, key_file_;
  const std::chrono::milliseconds check_interval_;
  std::mutex mu_;
  std::shared_ptr<const Pair> current_;
  std::chrono::steady_clock::time_point last_check_;
};

}  // namespace gm::reporter
