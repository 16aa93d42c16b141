#pragma once
// Client internals shared by client.cpp (requests) and watch.cpp (streams).

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "detail/curl_transfer.h"
#include "detail/token_source.h"
#include "gm/kube/client.h"
#include "gm/kube/token_bucket.h"

namespace gm::kube {

class Client::Impl {
 public:
  Impl(const Config& config, ClientOptions options);

  std::string Url(const std::string& path, const Query& query) const;
  /// Accept, User-Agent, Authorization and, with a body, Content-Type.
  std::vector<std::string> Headers(const std::string& content_type, bool has_body,
                                   bool fresh_token);

  /// A pooled connection, so concurrent requests do not share a handle
  /// while sequential ones reuse the kept-alive connection.
  std::unique_ptr<detail::CurlConnection> Acquire();
  void Release(std::unique_ptr<detail::CurlConnection> conn);

  void Observe(const std::string& verb, int code, double seconds) const;

  const Config config;
  const ClientOptions options;
  TokenBucket bucket;
  detail::TokenSource tokens;
  std::atomic<bool> stopped{false};

 private:
  std::string base_url_;
  std::string user_agent_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<detail::CurlConnection>> idle_;
};

}  // namespace gm::kube
