#pragma once
// The pure halves of the report client's HTTPS/1.1 POST: the URL it is given
// and the response it reads back. No sockets here, so both are tested on
// literal input (tests/unit/https_wire_test.cpp).

#include <cstddef>
#include <optional>
#include <string>

namespace gm::exporter {

/// An https:// URL split into what a request needs.
struct HttpsUrl {
  std::string host;    // DNS name or IP literal, IPv6 without brackets
  int port = 443;      //
  std::string target;  // path and query, always starting with '/'

  /// The Host header value: brackets around IPv6, the port unless it is 443.
  std::string HostHeader() const;
};

/// True when `host` is an IPv4 or IPv6 literal (no SNI is sent for those).
bool IsIpLiteral(const std::string& host);

/// Parses "https://host[:port][/path][?query]"; a fragment is dropped. Any
/// other scheme, user info, an empty host or a bad port is an error.
std::optional<HttpsUrl> ParseHttpsUrl(const std::string& url, std::string& error);

/// Reads one HTTP/1.x response fed in pieces as they arrive. Handles
/// Content-Length, chunked bodies, bodies that end at connection close, and
/// skips 1xx interim responses. Keeps at most `max_body_kept` bytes of the
/// body (the report client needs the status, and the body only for an error
/// message), but reads to the body's real end.
class HttpResponseParser {
 public:
  enum class State { kIncomplete, kComplete, kError };

  explicit HttpResponseParser(size_t max_body_kept = 4096) : max_body_kept_(max_body_kept) {}

  /// Consumes `n` bytes; returns the state after them. Bytes after the end of
  /// the response are ignored.
  State Feed(const char* data, size_t n);
  /// The peer closed the connection: completes a close-delimited body, and is
  /// an error anywhere else.
  State Finish();

  State state() const { return state_; }
  int status() const { return status_; }
  const std::string& body() const { return body_; }
  const std::string& error() const { return error_; }

 private:
  enum class Phase {
    kHead,
    kFixedBody,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailers,
    kUntilClose,
    kDone
  };
  State Fail(std::string error);
  void ParseHead();  // head_ holds the whole header block
  void Keep(const char* data, size_t n);

  const size_t max_body_kept_;
  State state_ = State::kIncomplete;
  Phase phase_ = Phase::kHead;
  std::string head_;  // header block, or the current chunk-size / trailer line
  int status_ = 0;
  size_t remaining_ = 0;  // bytes left in the fixed body or the current chunk
  std::string body_;
  std::string error_;
};

}  // namespace gm::exporter
