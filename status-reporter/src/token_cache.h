#pragma once
// TokenReview results, cached for the token's lifetime so that each sidecar's
// report every 120 s costs no API call. Keys are SHA-256 digests: 10,000
// cached tokens cost kilobytes, and no token is kept in memory.

#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "report_check.h"

namespace gm::reporter {

/// Expiry ("exp") of a JWT, read without verifying it: only to bound the
/// cache lifetime, never to trust the token (TokenReview does that).
std::optional<std::chrono::system_clock::time_point> JwtExpiry(const std::string& token);

class TokenCache {
 public:
  /// Entries never outlive `max_ttl`, even for tokens without "exp". The
  /// default is the sidecar token's default lifetime: a cap of 10 minutes
  /// re-reviewed every token ~6 times over its life, 17 TokenReviews/s at
  /// 10,000 VMIs, most of the default --qps. A cached token of a pod that has
  /// since gone is harmless: reports are also checked against the pod cache,
  /// and a pod that is not its VMI's active pod is refused.
  explicit TokenCache(std::chrono::seconds max_ttl = std::chrono::seconds(3600))
      : max_ttl_(max_ttl) {}

  std::optional<TokenIdentity> Get(const std::string& token,
                                   std::chrono::system_clock::time_point now);
  void Put(const std::string& token, const TokenIdentity& who,
           std::chrono::system_clock::time_point now);
  size_t size() const;

 private:
  using Digest = std::array<unsigned char, 32>;
  static Digest Hash(const std::string& token);
  struct Entry {
    TokenIdentity who;
    std::chrono::system_clock::time_point expires;
  };
  const std::chrono::seconds max_ttl_;
  mutable std::mutex mu_;
  std::map<Digest, Entry> entries_;
  std::chrono::system_clock::time_point last_sweep_{};
};

}  // namespace gm::reporter
