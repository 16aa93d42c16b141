#include "http_protocol.h"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

namespace gm::exporter {

namespace {

namespace http = boost::beast::http;

const char* StatusText(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

HttpResponse Refusal(int status, const std::string& why) {
  return {status, "text/plain; charset=utf-8", why + "\n"};
}

}  // namespace

size_t HttpSession::wanted() const {
  if (closing_ || response_ready() || in_.size() >= kMaxRequestHeaderBytes) return 0;
  return kMaxRequestHeaderBytes - in_.size();
}

void HttpSession::Feed(std::string_view bytes) {
  in_.append(bytes.substr(0, wanted()));
  Parse();
}

void HttpSession::ResponseSent() {
  out_.clear();
  if (closing_) {
    in_.clear();
    return;
  }
  Parse();  // a request pipelined behind the one just answered
}

void HttpSession::Parse() {
  if (closing_ || response_ready() || in_.empty()) return;
  // A fresh parser over the whole buffer each time: the buffer is at most
  // 8 KiB, and no parser state survives between requests or attempts.
  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(kMaxRequestHeaderBytes));
  parser.body_limit(0);
  parser.eager(false);
  boost::beast::error_code ec;
  const size_t used = parser.put(boost::asio::const_buffer(in_.data(), in_.size()), ec);
  if (ec == http::error::need_more) {
    if (in_.size() < kMaxRequestHeaderBytes) return;  // wait for the rest of the head
    ec = http::error::header_limit;
  }
  closing_ = true;  // every refusal below closes: the stream can no longer be trusted
  if (ec == http::error::header_limit)
    return Respond(Refusal(431, "request header too large"), false);
  if (ec == http::error::body_limit || ec == http::error::unexpected_body) {
    return Respond(Refusal(400, "request bodies are not accepted"), false);
  }
  if (ec) return Respond(Refusal(400, "malformed request: " + ec.message()), false);
  if (!parser.is_done() || parser.chunked())
    return Respond(Refusal(400, "request bodies are not accepted"), false);
  in_.erase(0, used);
  closing_ = !parser.keep_alive();

  const auto& msg = parser.get();
  HttpRequest req{std::string(msg.method_string()), std::string(msg.target())};
  if (const auto q = req.path.find('?'); q != std::string::npos) req.path.resize(q);
  const bool head = msg.method() == http::verb::head;
  if (!head && msg.method() != http::verb::get) {
    return Respond(Refusal(405, "only GET and HEAD are served"), false);
  }
  Respond(handler_(req), head);
}

void HttpSession::Respond(const HttpResponse& r, bool head_only) {
  out_.reserve(128 + (head_only ? 0 : r.body.size()));
  out_ += "HTTP/1.1 ";
  out_ += std::to_string(r.status);
  out_ += ' ';
  out_ += StatusText(r.status);
  out_ += "\r\nContent-Type: ";
  out_ += r.content_type;
  out_ += "\r\nContent-Length: ";
  out_ += std::to_string(r.body.size());
  if (closing_) out_ += "\r\nConnection: close";
  out_ += "\r\n\r\n";
  if (!head_only) out_ += r.body;
}

}  // namespace gm::exporter
