#include "https_wire.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <vector>

namespace gm::exporter {

namespace {

// A header block or a trailer section bigger than this is not from a sane
// status-reporter; refusing it bounds the sidecar's memory.
constexpr size_t kMaxHeadBytes = 16384;
constexpr size_t kMaxChunkLine = 1024;

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string HttpsUrl::HostHeader() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  if (port != 443) h += ":" + std::to_string(port);
  return h;
}

std::optional<HttpsUrl> ParseHttpsUrl(const std::string& url, std::string& error) {
  const auto fail = [&](const std::string& why) -> std::optional<HttpsUrl> {
    error = "invalid URL '" + url + "': " + why;
    return std::nullopt;
  };
  constexpr const char* kScheme = "https://";
  if (url.size() < 8 || Lower(url.substr(0, 8)) != kScheme)
    return fail("only https:// is supported");
  std::string rest = url.substr(8);
  if (const auto hash = rest.find('#'); hash != std::string::npos) rest.resize(hash);
  for (char c : rest) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      return fail("it contains a space or a control character");
  }
  const auto path_at = rest.find_first_of("/?");
  std::string authority = rest.substr(0, path_at);
  HttpsUrl out;
  out.target = path_at == std::string::npos ? "/" : rest.substr(path_at);
  if (out.target[0] == '?') out.target.insert(0, "/");
  if (authority.find('@') != std::string::npos) return fail("user info is not supported");
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return fail("unterminated '[' in the host");
    out.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return fail("unexpected text after ']'");
      port_text = after.substr(1);
      if (port_text.empty()) return fail("empty port");
    }
    in6_addr a6{};
    if (inet_pton(AF_INET6, out.host.c_str(), &a6) != 1)
      return fail("'" + out.host + "' is not an IPv6 address");
  } else {
    const auto colon = authority.find(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return fail("empty port");
    }
  }
  if (out.host.empty()) return fail("no host");
  if (!port_text.empty()) {
    if (!AllDigits(port_text) || port_text.size() > 5)
      return fail("invalid port '" + port_text + "'");
    out.port = std::atoi(port_text.c_str());
    if (out.port < 1 || out.port > 65535) return fail("port " + port_text + " is out of range");
  }
  out.host =
      Lower(out.host);  // DNS names compare case-insensitively; certificates store them lower case
  return out;
}

// --- response parser -------------------------------------------------------

HttpResponseParser::State HttpResponseParser::Fail(std::string error) {
  error_ = std::move(error);
  state_ = State::kError;
  phase_ = Phase::kDone;
  return state_;
}

void HttpResponseParser::Keep(const char* data, size_t n) {
  if (body_.size() < max_body_kept_) body_.append(data, std::min(n, max_body_kept_ - body_.size()));
}

void HttpResponseParser::ParseHead() {
  // Lines end in CRLF; a bare LF is tolerated, as HTTP/1.1 recommends.
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < head_.size()) {
    const auto nl = head_.find('\n', start);
    std::string line = head_.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    lines.push_back(std::move(line));
    start = nl + 1;
  }
  if (lines.empty()) {
    Fail("empty response head");
    return;
  }
  const std::string& sl = lines[0];
  // "HTTP/1.1 201 Created": version, a 3-digit status, an optional reason.
  if (sl.size() < 12 || sl.compare(0, 7, "HTTP/1.") != 0 || sl[8] != ' ' ||
      !AllDigits(sl.substr(9, 3)) || (sl.size() > 12 && sl[12] != ' ')) {
    {
      Fail("malformed status line '" + sl.substr(0, 80) + "'");
      return;
    }
  }
  status_ = std::atoi(sl.substr(9, 3).c_str());
  std::optional<size_t> length;
  bool chunked = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto colon = lines[i].find(':');
    if (colon == std::string::npos || colon == 0) {
      {
        Fail("malformed header line '" + lines[i].substr(0, 80) + "'");
        return;
      }
    }
    const std::string name = Lower(Trim(lines[i].substr(0, colon)));
    const std::string value = Trim(lines[i].substr(colon + 1));
    if (name == "content-length") {
      if (!AllDigits(value) || value.size() > 15) {
        Fail("invalid Content-Length '" + value + "'");
        return;
      }
      const auto n = static_cast<size_t>(std::strtoull(value.c_str(), nullptr, 10));
      if (length && *length != n) {
        Fail("conflicting Content-Length headers");
        return;
      }
      length = n;
    } else if (name == "transfer-encoding") {
      const std::string v = Lower(value);
      // Only "chunked" (possibly after "identity") is understood; anything
      // else would be read wrongly, so it is an error rather than a guess.
      const auto last = v.rfind(',');
      const std::string final_coding = Trim(last == std::string::npos ? v : v.substr(last + 1));
      if (final_coding != "chunked") {
        Fail("unsupported Transfer-Encoding '" + value + "'");
        return;
      }
      chunked = true;
    }
  }
  head_.clear();
  if (status_ >= 100 && status_ < 200) {
    if (status_ == 101) {
      Fail("unexpected 101 Switching Protocols");
      return;
    }
    status_ = 0;  // interim (100 Continue, 103 Early Hints): the real response follows
    return;
  }
  if (status_ == 204 || status_ == 304) {
    phase_ = Phase::kDone;
  } else if (chunked) {
    phase_ = Phase::kChunkSize;  // chunked wins over Content-Length (RFC 9112 6.3)
  } else if (length) {
    remaining_ = *length;
    phase_ = remaining_ == 0 ? Phase::kDone : Phase::kFixedBody;
  } else {
    phase_ = Phase::kUntilClose;
  }
  if (phase_ == Phase::kDone) state_ = State::kComplete;
}

HttpResponseParser::State HttpResponseParser::Feed(const char* data, size_t n) {
  size_t i = 0;
  while (i < n && state_ == State::kIncomplete) {
    switch (phase_) {
      case Phase::kHead: {
        const size_t old = head_.size();
        head_.append(data + i, n - i);
        // The head ends at an empty line; look only where it can newly appear.
        const size_t from = old >= 3 ? old - 3 : 0;
        size_t end = std::string::npos;
        for (size_t k = from; k < head_.size(); ++k) {
          if (head_[k] != '\n') continue;
          if (k + 1 < head_.size() && head_[k + 1] == '\n') {
            end = k + 2;
            break;
          }
          if (k + 2 < head_.size() && head_[k + 1] == '\r' && head_[k + 2] == '\n') {
            end = k + 3;
            break;
          }
        }
        if (end == std::string::npos) {
          if (head_.size() > kMaxHeadBytes) return Fail("response head larger than 16 KiB");
          i = n;
          break;
        }
        // Hand back what followed the head to the loop.
        const size_t consumed_here = end - old;
        head_.resize(end);
        i += consumed_here;
        ParseHead();
        break;
      }
      case Phase::kFixedBody:
      case Phase::kChunkData: {
        const size_t take = std::min(remaining_, n - i);
        Keep(data + i, take);
        remaining_ -= take;
        i += take;
        if (remaining_ == 0) {
          if (phase_ == Phase::kFixedBody) {
            phase_ = Phase::kDone;
            state_ = State::kComplete;
          } else {
            phase_ = Phase::kChunkDataEnd;
          }
        }
        break;
      }
      case Phase::kChunkSize:
      case Phase::kChunkDataEnd:
      case Phase::kTrailers: {
        const char c = data[i++];
        if (phase_ == Phase::kChunkDataEnd && c != '\r' && c != '\n')
          return Fail("chunk data not followed by CRLF");
        if (c != '\n') {
          head_ += c;
          const size_t limit = phase_ == Phase::kTrailers ? kMaxHeadBytes : kMaxChunkLine;
          if (head_.size() > limit) return Fail("chunk framing line too long");
          break;
        }
        std::string line = head_;
        head_.clear();
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (phase_ == Phase::kChunkDataEnd) {
          if (!line.empty()) return Fail("chunk data not followed by CRLF");
          phase_ = Phase::kChunkSize;
        } else if (phase_ == Phase::kTrailers) {
          if (line.empty()) {
            phase_ = Phase::kDone;
            state_ = State::kComplete;
          }
        } else {
          const std::string size_text = Trim(line.substr(0, line.find(';')));
          if (size_text.empty() || size_text.size() > 15 ||
              !std::all_of(size_text.begin(), size_text.end(),
                           [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); })) {
            return Fail("invalid chunk size '" + line.substr(0, 40) + "'");
          }
          remaining_ = static_cast<size_t>(std::strtoull(size_text.c_str(), nullptr, 16));
          phase_ = remaining_ == 0 ? Phase::kTrailers : Phase::kChunkData;
        }
        break;
      }
      case Phase::kUntilClose:
        Keep(data + i, n - i);
        i = n;
        break;
      case Phase::kDone:
        i = n;
        break;
    }
  }
  return state_;
}

HttpResponseParser::State HttpResponseParser::Finish() {
  if (state_ != State::kIncomplete) return state_;
  if (phase_ == Phase::kUntilClose) {
    phase_ = Phase::kDone;
    state_ = State::kComplete;
    return state_;
  }
  return Fail(phase_ == Phase::kHead && head_.empty()
                  ? "connection closed without a response"
                  : "connection closed before the response was complete");
}

}  // namespace gm::exporter
