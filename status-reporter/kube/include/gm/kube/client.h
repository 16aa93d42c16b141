#pragma once
// A Kubernetes REST client over libcurl: HTTP/1.1 keep-alive connections,
// TLS verified with the cluster's CA, a client-side token bucket shared by
// all requests, retries that honour Retry-After, typed errors, watches.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gm/kube/config.h"
#include "gm/kube/errors.h"

namespace gm::kube {

using Query = std::map<std::string, std::string>;

inline constexpr const char* kMergePatch = "application/merge-patch+json";
inline constexpr const char* kJsonPatch = "application/json-patch+json";
inline constexpr const char* kStrategicMergePatch = "application/strategic-merge-patch+json";

struct RequestSpec {
  std::string verb = "GET";  ///< GET, POST, PUT, PATCH or DELETE
  std::string path;          ///< e.g. "/api/v1/namespaces/ns/pods/p"
  Query query;               ///< percent-encoded by the client
  std::string body;
  std::string content_type;  ///< default "application/json" when there is a body
  std::optional<std::chrono::milliseconds> timeout;  ///< per attempt; default Config::timeout
  /// Retry 429, 5xx and transport errors. Default: yes, except for POST,
  /// which is retried only where the server cannot have acted on it (429,
  /// failure before the request was sent). A 401 is retried once after
  /// re-reading the token file, whatever this says.
  std::optional<bool> retry;
  /// Raising it abandons the request (rate-limit wait, retry wait or
  /// transfer) with Cancelled.
  const std::atomic<bool>* stop = nullptr;
};

struct Response {
  int code = 0;
  std::string body;
  std::multimap<std::string, std::string> headers;  ///< names in lower case
  std::vector<std::string> warnings;                ///< texts of the Warning headers
};

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{
      250};                                   ///< doubled per attempt when there is no Retry-After
  std::chrono::milliseconds max_wait{10000};  ///< cap on one wait, Retry-After included
  std::chrono::milliseconds deadline{30000};  ///< all attempts and waits of one request
};

/// Called once per HTTP attempt with the verb ("WATCH" for a watch
/// stream), the status code (0 when no answer came) and the seconds taken.
using RequestObserver = std::function<void(const std::string& verb, int code, double seconds)>;

struct ClientOptions {
  RetryPolicy retry;
  RequestObserver observer;
};

/// One watch event; return false to end the watch.
using WatchHandler = std::function<bool(const std::string& type, const nlohmann::json& object)>;

/// Seconds from a Retry-After value: a non-negative integer, which is what
/// the API server sends; nullopt for anything else (HTTP dates included).
std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value);

/// The texts of one Warning header value (RFC 7234 `299 - "text"`, possibly
/// several separated by commas), unquoted. A malformed value comes back whole.
std::vector<std::string> ParseWarningHeader(std::string_view value);

class Client {
 public:
  /// Throws std::invalid_argument when the config cannot work: no or a
  /// non-http(s) server, unreadable token, CA or certificate files.
  explicit Client(const Config& config, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// One request, rate-limited and retried per the spec. Returns 2xx
  /// answers; anything else throws the matching ApiError subclass, with the
  /// last answer's Status once the retries are used up. Thread-safe.
  Response Request(const RequestSpec& spec);

  nlohmann::json Get(const std::string& path, const Query& query = {});
  /// POST to a collection. `warnings`, when given, receives the Warning texts.
  nlohmann::json Create(const std::string& collection_path, const nlohmann::json& object,
                        const Query& query = {}, std::vector<std::string>* warnings = nullptr);
  /// PUT; a metadata.resourceVersion in `object` makes it conditional (409 when stale).
  nlohmann::json Update(const std::string& path, const nlohmann::json& object,
                        const Query& query = {}, std::vector<std::string>* warnings = nullptr);
  nlohmann::json Patch(const std::string& path, const nlohmann::json& patch,
                       const std::string& patch_type = kMergePatch, const Query& query = {},
                       std::vector<std::string>* warnings = nullptr);
  /// Returns what the server answers: the object or a Status.
  nlohmann::json Delete(const std::string& path, const Query& query = {});

  /// Streams `path`?watch=1 and calls `on_event` for each ADDED, MODIFIED,
  /// DELETED and BOOKMARK event. Returns when `on_event` returns false,
  /// `stop` (or Stop()) is raised (noticed within 100 ms), or the server
  /// ends the stream (timeoutSeconds). Throws the ApiError of an ERROR
  /// event (410 Expired → Gone) or of a non-200 answer, and TransportError
  /// when the stream breaks, or stalls past timeoutSeconds + 30 s. Not
  /// retried: the caller resumes from the last resourceVersion it saw.
  void Watch(const std::string& path, Query query, const WatchHandler& on_event,
             const std::atomic<bool>& stop);

  /// For shutdown: abandons waits and transfers in progress and makes later
  /// requests throw Cancelled.
  void Stop();

  const Config& config() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gm::kube
