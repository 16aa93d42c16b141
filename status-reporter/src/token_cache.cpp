#include "token_cache.h"

#include <openssl/sha.h>

#include <nlohmann/json.hpp>

namespace gm::reporter {

namespace {

std::optional<std::string> Base64UrlDecode(const std::string& in) {
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  for (const char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '-' || c == '+')
      v = 62;
    else if (c == '_' || c == '/')
      v = 63;
    else if (c == '=')
      break;
    else
      return std::nullopt;
    buf = (buf << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> JwtExpiry(const std::string& token) {
  const auto first = token.find('.');
  const auto second = token.find('.', first + 1);
  if (first == std::string::npos || second == std::string::npos) return std::nullopt;
  const auto payload = Base64UrlDecode(token.substr(first + 1, second - first - 1));
  if (!payload) return std::nullopt;
  const auto claims = nlohmann::json::parse(*payload, nullptr, false);
  if (claims.is_discarded() || !claims.is_object() || !claims.contains("exp") ||
      !claims["exp"].is_number()) {
    return std::nullopt;
  }
  return std::chrono::system_clock::time_point(std::chrono::seconds(claims["exp"].get<int64_t>()));
}

TokenCache::Digest TokenCache::Hash(const std::string& token) {
  Digest d;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d.data());
  return d;
}

std::optional<TokenIdentity> TokenCache::Get(const std::string& token,
                                             std::chrono::system_clock::time_point now) {
  const Digest key = Hash(token);
  std::lock_guard lock(mu_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (now >= it->second.expires) {
    entries_.erase(it);
    return std::nullopt;
  }
  return it->second.who;
}

void TokenCache::Put(const std::string& token, const TokenIdentity& who,
                     std::chrono::system_clock::time_point now) {
  auto expires = now + max_ttl_;
  if (const auto exp = JwtExpiry(token)) expires = std::min(expires, *exp);
  if (expires <= now) return;
  std::lock_guard lock(mu_);
  // Expired entries are swept once a minute, so the map never holds much more
  // than one token per running sidecar and a Put stays cheap.
  if (now - last_sweep_ >= std::chrono::minutes(1)) {
    last_sweep_ = now;
    for (auto it = entries_.begin(); it != entries_.end();) {
      it = now >= it->second.expires ? entries_.erase(it) : std::next(it);
    }
  }
  entries_[Hash(token)] = {who, expires};
}

size_t TokenCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace gm::reporter
