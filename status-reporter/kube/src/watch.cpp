#include <chrono>
#include <string>

#include "client_impl.h"

namespace gm::kube {
namespace {

// One event is one object; anything near this is a broken stream, not data.
constexpr std::size_t kMaxEventBytes = 64u << 20;
// How long past its timeoutSeconds a stream may run before it counts as stalled.
constexpr std::chrono::seconds kStallMargin{30};

[[noreturn]] void ThrowTransport(const std::string& path, const std::string& error) {
  Status s;
  s.reason = "TransportError";
  s.message = "WATCH " + path + ": " + error;
  throw TransportError(std::move(s));
}

// Splits the chunked body into JSON lines and hands each event on.
class EventStream {
 public:
  EventStream(const std::string& path, const WatchHandler& on_event)
      : path_(path), on_event_(on_event) {}

  bool Feed(std::string_view data) {
    buffer_.append(data);
    std::size_t start = 0;
    for (std::size_t nl; (nl = buffer_.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (!Dispatch(std::string_view(buffer_).substr(start, nl - start))) {
        ended_by_handler_ = true;
        return false;
      }
    }
    buffer_.erase(0, start);
    if (buffer_.size() > kMaxEventBytes) ThrowTransport(path_, "a watch event exceeds 64 MiB");
    return true;
  }

  bool ended_by_handler() const { return ended_by_handler_; }

 private:
  bool Dispatch(std::string_view line) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return true;
    auto event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto type = event.is_object() ? event.find("type") : event.end();
    auto object = event.is_object() ? event.find("object") : event.end();
    if (event.is_discarded() || type == event.end() || !type->is_string() ||
        object == event.end()) {
      ThrowTransport(path_, "malformed watch event: " + std::string(line.substr(0, 200)));
    }
    // The server reports errors after the 200 as an ERROR event carrying a Status.
    if (*type == "ERROR") ThrowApiError(StatusFromObject(*object, 500));
    return on_event_(type->get_ref<const std::string&>(), *object);
  }

  const std::string& path_;
  const WatchHandler& on_event_;
  std::string buffer_;
  bool ended_by_handler_ = false;
};

}  // namespace

void Client::Watch(const std::string& path, Query query, const WatchHandler& on_event,
                   const std::atomic<bool>& stop) {
  Impl& im = *impl_;
  query["watch"] = "1";
  detail::HttpRequest req;
  req.method = "GET";
  req.url = im.Url(path, query);
  req.connect_timeout = im.config.timeout;
  auto timeout_seconds = query.find("timeoutSeconds");
  if (timeout_seconds != query.end()) {
    auto seconds =
        ParseRetryAfter(timeout_seconds->second);  // same grammar: a non-negative integer
    if (!seconds)
      throw std::invalid_argument("kube watch: timeoutSeconds must be a non-negative integer");
    req.timeout = *seconds + kStallMargin;
  }
  if (!im.bucket.Wait(&im.stopped, &stop)) return;
  req.headers = im.Headers("", false, false);

  EventStream events(path, on_event);
  const detail::BodySink sink = [&events](std::string_view data) { return events.Feed(data); };
  auto conn = im.Acquire();
  const auto start = std::chrono::steady_clock::now();
  detail::HttpResult r;
  try {
    r = conn->Perform(req, im.config, &sink, {&stop, &im.stopped});
  } catch (...) {
    // An ERROR event, a malformed stream or the handler's own exception: the
    // connection is still sound for reuse.
    im.Release(std::move(conn));
    im.Observe("WATCH", 200,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    throw;
  }
  im.Release(std::move(conn));
  im.Observe("WATCH", r.failed && r.code == 0 ? 0 : r.code, r.seconds);
  if (r.cancelled || events.ended_by_handler()) return;
  if (r.code != 0 && r.code != 200) {
    if (r.code == 401)
      im.tokens.Token(/*force=*/true);  // the caller's next attempt gets a fresh token
    ThrowApiError(ParseStatus(r.code, r.body));
  }
  if (r.failed) ThrowTransport(path, r.error);
}

}  // namespace gm::kube
