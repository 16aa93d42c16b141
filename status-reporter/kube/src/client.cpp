#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include "client_impl.h"
#include "detail/stop.h"

namespace gm::kube {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kMaxIdleConnections = 8;

void RequireReadable(const std::string& path, const char* what) {
  if (!path.empty() && !std::ifstream(path)) {
    throw std::invalid_argument(std::string("kube client: cannot read the ") + what + " " + path);
  }
}

const Config& Validated(const Config& c) {
  if (c.server.rfind("https://", 0) != 0 && c.server.rfind("http://", 0) != 0) {
    throw std::invalid_argument("kube client: server \"" + c.server + "\" is not an http(s) URL");
  }
  RequireReadable(c.ca_file, "CA file");
  RequireReadable(c.client_cert_file, "client certificate");
  RequireReadable(c.client_key_file, "client key");
  return c;
}

bool IsRetryableServerError(int code) {
  return code == 500 || code == 502 || code == 503 || code == 504;
}

Status TransportStatus(const std::string& verb, const std::string& path, const std::string& error) {
  Status s;
  s.reason = "TransportError";
  s.message = verb + " " + path + ": " + error;
  return s;
}

[[noreturn]] void ThrowCancelled(const std::string& verb, const std::string& path) {
  throw Cancelled(TransportStatus(verb, path, "cancelled: the client is stopping"));
}

std::vector<std::string> Warnings(const std::multimap<std::string, std::string>& headers) {
  std::vector<std::string> out;
  auto range = headers.equal_range("warning");
  for (auto it = range.first; it != range.second; ++it) {
    for (auto& text : ParseWarningHeader(it->second)) out.push_back(std::move(text));
  }
  return out;
}

// The wait before the next attempt: the server's Retry-After when it gave
// one, else exponential backoff; both capped.
milliseconds RetryWait(const RetryPolicy& policy, int attempt, const detail::HttpResult& r,
                       const Status& status) {
  std::optional<std::chrono::seconds> retry_after;
  auto header = r.headers.find("retry-after");
  if (header != r.headers.end()) retry_after = ParseRetryAfter(header->second);
  if (!retry_after && status.retry_after_seconds)
    retry_after = std::chrono::seconds(*status.retry_after_seconds);
  if (retry_after) return std::min<milliseconds>(*retry_after, policy.max_wait);
  const double backoff =
      static_cast<double>(policy.initial_backoff.count()) * std::pow(2.0, attempt - 1);
  return std::min(milliseconds(static_cast<milliseconds::rep>(backoff)), policy.max_wait);
}

nlohmann::json ParseBody(const Response& r, const RequestSpec& spec) {
  if (r.body.empty()) return nullptr;
  auto json = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    Status s;
    s.code = r.code;
    s.reason = "InvalidResponse";
    s.message = spec.verb + " " + spec.path + ": the answer is not JSON";
    throw ApiError(std::move(s));
  }
  return json;
}

}  // namespace

std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value) {
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front())))
    value.remove_prefix(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back())))
    value.remove_suffix(1);
  if (value.empty() || value.size() > 9)
    return std::nullopt;  // 9 digits: over 30 years, no overflow
  long seconds = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    seconds = seconds * 10 + (c - '0');
  }
  return std::chrono::seconds(seconds);
}

std::vector<std::string> ParseWarningHeader(std::string_view value) {
  // warning = warn-code SP warn-agent SP warn-text [ SP warn-date ], comma-separated.
  std::vector<std::string> texts;
  std::vector<std::string> whole{std::string(value)};  // not const: each return moves it
  std::size_t i = 0;
  const std::size_t n = value.size();
  auto skip = [&](std::string_view chars) {
    while (i < n && chars.find(value[i]) != std::string_view::npos) ++i;
  };
  // Reads a quoted-string at i; false when there is none.
  auto quoted = [&](std::string* out) {
    if (i >= n || value[i] != '"') return false;
    for (++i; i < n; ++i) {
      if (value[i] == '\\' && i + 1 < n) {
        if (out) out->push_back(value[++i]);
      } else if (value[i] == '"') {
        ++i;
        return true;
      } else if (out) {
        out->push_back(value[i]);
      }
    }
    return false;
  };
  for (;;) {
    skip(" ,");
    if (i >= n) break;
    if (i + 3 >= n || !std::isdigit(static_cast<unsigned char>(value[i])) ||
        !std::isdigit(static_cast<unsigned char>(value[i + 1])) ||
        !std::isdigit(static_cast<unsigned char>(value[i + 2])) || value[i + 3] != ' ') {
      return whole;
    }
    i = value.find(' ', i + 4);  // past the agent
    if (i == std::string_view::npos) return whole;
    skip(" ");
    std::string text;
    if (!quoted(&text)) return whole;
    skip(" ");
    if (i < n && value[i] == '"' && !quoted(nullptr)) return whole;  // the optional date
    skip(" ");
    if (i < n && value[i] != ',') return whole;
    texts.push_back(std::move(text));
  }
  return texts;
}

Client::Impl::Impl(const Config& c, ClientOptions o)
    : config(Validated(c)),
      options(std::move(o)),
      bucket(config.qps, config.burst),
      tokens(config.token, config.token_file),
      base_url_(config.server),
      user_agent_(config.user_agent.empty() ? "kubevirt-guest-metrics" : config.user_agent) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

std::string Client::Impl::Url(const std::string& path, const Query& query) const {
  if (path.empty() || path.front() != '/')
    throw std::invalid_argument("kube client: path must start with /: " + path);
  std::string url = base_url_ + path;
  char sep = '?';
  for (const auto& [key, value] : query) {
    url += sep + detail::UrlEncode(key) + "=" + detail::UrlEncode(value);
    sep = '&';
  }
  return url;
}

std::vector<std::string> Client::Impl::Headers(const std::string& content_type, bool has_body,
                                               bool fresh_token) {
  std::vector<std::string> h{"Accept: application/json", "User-Agent: " + user_agent_,
                             "Expect:"};  // no 100-continue round trip before large bodies
  const std::string token = tokens.Token(fresh_token);
  if (!token.empty()) h.push_back("Authorization: Bearer " + token);
  if (has_body)
    h.push_back("Content-Type: " +
                (content_type.empty() ? std::string("application/json") : content_type));
  return h;
}

std::unique_ptr<detail::CurlConnection> Client::Impl::Acquire() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
  }
  return std::make_unique<detail::CurlConnection>();
}

void Client::Impl::Release(std::unique_ptr<detail::CurlConnection> conn) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(conn));
}

void Client::Impl::Observe(const std::string& verb, int code, double seconds) const {
  if (options.observer) options.observer(verb, code, seconds);
}

Client::Client(const Config& config, ClientOptions options)
    : impl_(std::make_unique<Impl>(config, std::move(options))) {}

Client::~Client() = default;

const Config& Client::config() const { return impl_->config; }

void Client::Stop() { impl_->stopped = true; }

Response Client::Request(const RequestSpec& spec) {
  static const std::vector<std::string> kVerbs{"GET", "POST", "PUT", "PATCH", "DELETE"};
  if (std::find(kVerbs.begin(), kVerbs.end(), spec.verb) == kVerbs.end()) {
    throw std::invalid_argument("kube client: unsupported verb " + spec.verb);
  }
  Impl& im = *impl_;
  const RetryPolicy& policy = im.options.retry;
  const bool retry_any = spec.retry.value_or(spec.verb != "POST");
  const auto deadline = Clock::now() + policy.deadline;
  const std::string url = im.Url(spec.path, spec.query);
  const bool has_body = !spec.body.empty();
  bool reread_token = false;
  bool token_retried = false;
  for (int attempt = 1;; ++attempt) {
    if (!im.bucket.Wait(&im.stopped, spec.stop)) ThrowCancelled(spec.verb, spec.path);
    detail::HttpRequest req;
    req.method = spec.verb;
    req.url = url;
    req.headers = im.Headers(spec.content_type, has_body, reread_token);
    reread_token = false;
    req.body = has_body ? &spec.body : nullptr;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    req.timeout =
        std::max(milliseconds(1), std::min(spec.timeout.value_or(im.config.timeout), left));
    req.connect_timeout = req.timeout;

    auto conn = im.Acquire();
    detail::HttpResult r = conn->Perform(req, im.config, nullptr, {&im.stopped, spec.stop});
    im.Release(std::move(conn));
    im.Observe(spec.verb, r.failed ? 0 : r.code, r.seconds);
    if (r.cancelled) ThrowCancelled(spec.verb, spec.path);
    if (!r.failed && r.code >= 200 && r.code <= 299) {
      Response out;
      out.code = r.code;
      out.body = std::move(r.body);
      out.warnings = Warnings(r.headers);
      out.headers = std::move(r.headers);
      return out;
    }
    // A rotated token is re-read right away and the request tried once
    // more, whatever the retry policy says.
    if (!r.failed && r.code == 401 && !token_retried && !im.config.token_file.empty()) {
      token_retried = reread_token = true;
      continue;
    }
    const Status status =
        r.failed ? TransportStatus(spec.verb, spec.path, r.error) : ParseStatus(r.code, r.body);
    const bool retryable = r.failed
                               ? (retry_any || r.nothing_sent)
                               : (r.code == 429 || (retry_any && IsRetryableServerError(r.code)));
    if (!retryable || attempt >= policy.max_attempts) ThrowApiError(status);
    const milliseconds wait = RetryWait(policy, attempt, r, status);
    if (Clock::now() + wait >= deadline) ThrowApiError(status);
    spdlog::debug("kube: {} {}: {}; retrying in {} ms (attempt {}/{})", spec.verb, spec.path,
                  r.failed ? r.error : std::to_string(r.code) + " " + status.reason, wait.count(),
                  attempt + 1, policy.max_attempts);
    if (!detail::SleepUnlessStopped(wait, {&im.stopped, spec.stop}))
      ThrowCancelled(spec.verb, spec.path);
  }
}

nlohmann::json Client::Get(const std::string& path, const Query& query) {
  RequestSpec spec;
  spec.path = path;
  spec.query = query;
  return ParseBody(Request(spec), spec);
}

namespace {

nlohmann::json Write(Client& client, const char* verb, const std::string& path,
                     const std::string& body, const std::string& content_type, const Query& query,
                     std::vector<std::string>* warnings) {
  RequestSpec spec;
  spec.verb = verb;
  spec.path = path;
  spec.query = query;
  spec.body = body;
  spec.content_type = content_type;
  Response r = client.Request(spec);
  if (warnings) *warnings = r.warnings;
  return ParseBody(r, spec);
}

}  // namespace

nlohmann::json Client::Create(const std::string& collection_path, const nlohmann::json& object,
                              const Query& query, std::vector<std::string>* warnings) {
  return Write(*this, "POST", collection_path, object.dump(), "application/json", query, warnings);
}

nlohmann::json Client::Update(const std::string& path, const nlohmann::json& object,
                              const Query& query, std::vector<std::string>* warnings) {
  return Write(*this, "PUT", path, object.dump(), "application/json", query, warnings);
}

nlohmann::json Client::Patch(const std::string& path, const nlohmann::json& patch,
                             const std::string& patch_type, const Query& query,
                             std::vector<std::string>* warnings) {
  return Write(*this, "PATCH", path, patch.dump(), patch_type, query, warnings);
}

nlohmann::json Client::Delete(const std::string& path, const Query& query) {
  RequestSpec spec;
  spec.verb = "DELETE";
  spec.path = path;
  spec.query = query;
  return ParseBody(Request(spec), spec);
}

}  // namespace gm::kube
