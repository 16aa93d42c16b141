#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>

namespace gm::exporter {

namespace {

constexpr size_t kMaxRequestBytes = 8192;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

void SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

const char* StatusText(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// Value of header `name` (lower case) in the header block, trimmed and lower-cased.
std::optional<std::string> HeaderValue(const std::string& head, const char* name) {
  std::string lower(head.size(), '\0');
  for (size_t i = 0; i < head.size(); ++i) {
    lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(head[i])));
  }
  const std::string key = std::string("\r\n") + name + ":";
  const auto pos = lower.find(key);
  if (pos == std::string::npos) return std::nullopt;
  auto begin = pos + key.size();
  auto end = lower.find("\r\n", begin);
  while (begin < end && (lower[begin] == ' ' || lower[begin] == '\t')) ++begin;
  while (end > begin && (lower[end - 1] == ' ' || lower[end - 1] == '\t')) --end;
  return lower.substr(begin, end - begin);
}

}  // namespace

std::pair<std::string, int> ParseListenAddress(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    throw std::invalid_argument("listen address '" + address + "' has no ':port'");
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = address.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < 0 || port > 65535) {
    throw std::invalid_argument("listen address '" + address + "' has an invalid port");
  }
  return {host, static_cast<int>(port)};
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler, Tick tick)
    : options_(std::move(options)), handler_(std::move(handler)), tick_(std::move(tick)) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) throw std::runtime_error(Errno("epoll/eventfd"));

  // Unix socket: always on; exec probes and local tools use it.
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (options_.unix_socket.size() >= sizeof(sun.sun_path)) {
    throw std::runtime_error("unix socket path '" + options_.unix_socket + "' is too long");
  }
  std::strncpy(sun.sun_path, options_.unix_socket.c_str(), sizeof(sun.sun_path) - 1);
  unix_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ::unlink(options_.unix_socket.c_str());  // a socket file left by a previous run
  if (bind(unix_fd_, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0 || listen(unix_fd_, 64) != 0) {
    throw std::runtime_error(Errno("cannot listen on unix socket '" + options_.unix_socket + "'"));
  }

  if (!options_.listen_address.empty()) {
    const auto [host, port] = ParseListenAddress(options_.listen_address);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string port_text = std::to_string(port);
    if (const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &res); rc != 0) {
      throw std::runtime_error("cannot resolve listen address '" + options_.listen_address + "': " + gai_strerror(rc));
    }
    tcp_fd_ = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(tcp_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const bool ok = bind(tcp_fd_, res->ai_addr, res->ai_addrlen) == 0 && listen(tcp_fd_, 128) == 0;
    freeaddrinfo(res);
    if (!ok) throw std::runtime_error(Errno("cannot listen on '" + options_.listen_address + "'"));
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    getsockname(tcp_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
    tcp_port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }

  // A tick fd without a tick would stay readable and spin the loop.
  if (!tick_) options_.tick_fd = -1;
  for (int fd : {wake_fd_, unix_fd_, tcp_fd_, options_.tick_fd}) {
    if (fd < 0) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

HttpServer::~HttpServer() {
  for (auto& [fd, c] : conns_) ::close(fd);
  for (int fd : {unix_fd_, tcp_fd_, wake_fd_, epoll_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  ::unlink(options_.unix_socket.c_str());
}

void HttpServer::Stop() {
  stop_ = true;
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

int HttpServer::WaitMillis() const {
  if (conns_.empty()) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(next_idle_check_ -
                                                                 std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

void HttpServer::Run() {
  epoll_event events[64];
  while (!stop_) {
    const int n = epoll_wait(epoll_fd_, events, 64, WaitMillis());
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) continue;
      if (fd == options_.tick_fd) {
        if (tick_) tick_();
      } else if (fd == unix_fd_ || fd == tcp_fd_) {
        Accept(fd);
      } else if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        Close(fd);
      } else {
        if (events[i].events & EPOLLIN) OnReadable(fd);
        if (conns_.count(fd) && (events[i].events & EPOLLOUT)) OnWritable(fd);
      }
    }
    if (!conns_.empty() && std::chrono::steady_clock::now() >= next_idle_check_) CloseIdle();
  }
}

void HttpServer::Accept(int listener) {
  for (;;) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN or a transient error: epoll tells us again
    if (conns_.size() >= options_.max_connections) {
      ::close(fd);  // bound memory: refuse rather than queue
      continue;
    }
    if (listener == tcp_fd_) {
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    const auto now = std::chrono::steady_clock::now();
    if (conns_.empty()) next_idle_check_ = now + options_.idle_timeout;
    conns_[fd].last_active = now;
  }
}

void HttpServer::OnReadable(int fd) {
  auto& c = conns_[fd];
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      // A short read drained the socket: skip the read that would only say
      // EAGAIN (epoll is level-triggered and reports anything that comes later).
      if (c.in.size() > 2 * kMaxRequestBytes || static_cast<size_t>(n) < sizeof buf) break;
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      Close(fd);
      return;
    }
    break;
  }
  c.last_active = std::chrono::steady_clock::now();
  ServeBuffered(fd, c);
}

void HttpServer::ServeBuffered(int fd, Conn& c) {
  // Serve every complete request in the buffer (pipelining), in order.
  while (!c.close_after_write) {
    const auto end = c.in.find("\r\n\r\n");
    HttpResponse resp;
    std::string head;
    if (end == std::string::npos) {
      if (c.in.size() <= kMaxRequestBytes) break;
      resp = {431, "text/plain; charset=utf-8", "request header too large\n"};
      c.close_after_write = true;
    } else {
      head = c.in.substr(0, end + 2);
      c.in.erase(0, end + 4);
      const auto line_end = head.find("\r\n");
      const std::string line = head.substr(0, line_end);
      const auto sp1 = line.find(' ');
      const auto sp2 = line.find(' ', sp1 + 1);
      if (sp1 == std::string::npos || sp2 == std::string::npos || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
        resp = {400, "text/plain; charset=utf-8", "malformed request line\n"};
        c.close_after_write = true;
      } else {
        HttpRequest req{line.substr(0, sp1), line.substr(sp1 + 1, sp2 - sp1 - 1)};
        if (const auto q = req.path.find('?'); q != std::string::npos) req.path.resize(q);
        const bool http10 = line.compare(sp2 + 1, 8, "HTTP/1.0") == 0;
        const auto connection = HeaderValue(head, "connection");
        if (http10 ? connection != "keep-alive" : connection == "close") c.close_after_write = true;
        const auto length = HeaderValue(head, "content-length");
        if ((length && *length != "0") || HeaderValue(head, "transfer-encoding")) {
          resp = {400, "text/plain; charset=utf-8", "request bodies are not accepted\n"};
          c.close_after_write = true;
        } else if (req.method != "GET" && req.method != "HEAD") {
          resp = {405, "text/plain; charset=utf-8", "only GET and HEAD are served\n"};
        } else {
          resp = handler_(req);
          if (req.method == "HEAD") {
            const size_t len = resp.body.size();
            resp.body.clear();
            c.out += "HTTP/1.1 " + std::to_string(resp.status) + " " + StatusText(resp.status) +
                     "\r\nContent-Type: " + resp.content_type + "\r\nContent-Length: " + std::to_string(len) +
                     (c.close_after_write ? "\r\nConnection: close" : "") + "\r\n\r\n";
            continue;
          }
        }
      }
    }
    c.out += "HTTP/1.1 " + std::to_string(resp.status) + " " + StatusText(resp.status) +
             "\r\nContent-Type: " + resp.content_type + "\r\nContent-Length: " +
             std::to_string(resp.body.size()) + (c.close_after_write ? "\r\nConnection: close" : "") +
             "\r\n\r\n" + resp.body;
  }
  OnWritable(fd);
}

void HttpServer::OnWritable(int fd) {
  auto& c = conns_[fd];
  while (!c.out.empty()) {
    const ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    Close(fd);
    return;
  }
  if (c.out.empty() && c.close_after_write) {
    Close(fd);
    return;
  }
  const bool want_out = !c.out.empty();
  if (want_out == c.watching_out) return;  // the usual case: the whole answer went out at once
  c.watching_out = want_out;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (want_out ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.fd = fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void HttpServer::Close(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  conns_.erase(fd);
}

void HttpServer::CloseIdle() {
  // One pass closes the idle connections and finds when the oldest of the
  // rest goes idle: the server wakes for that, not on a fixed period.
  const auto now = std::chrono::steady_clock::now();
  const auto cutoff = now - options_.idle_timeout;
  auto oldest = now;
  for (auto it = conns_.begin(); it != conns_.end();) {
    const int fd = it->first;
    const auto last = it->second.last_active;
    ++it;
    if (last <= cutoff) {
      Close(fd);
    } else {
      oldest = std::min(oldest, last);
    }
  }
  next_idle_check_ = oldest + options_.idle_timeout;
}

int HttpGetUnix(const std::string& socket_path, const std::string& path,
                std::chrono::milliseconds timeout, std::string& body, std::string& error) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(sun.sun_path)) {
    error = "socket path too long";
    return -1;
  }
  std::strncpy(sun.sun_path, socket_path.c_str(), sizeof(sun.sun_path) - 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    error = Errno("cannot connect to " + socket_path);
    ::close(fd);
    return -1;
  }
  SetNonBlocking(fd);
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  size_t sent = 0;
  std::string reply;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error = "no answer within " + std::to_string(timeout.count()) + " ms";
      ::close(fd);
      return -1;
    }
    pollfd p{fd, static_cast<short>(sent < req.size() ? POLLOUT : POLLIN), 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    if (sent < req.size()) {
      const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN) break;
      if (n > 0) sent += static_cast<size_t>(n);
      continue;
    }
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      reply.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EAGAIN) continue;
    break;  // EOF: HTTP/1.0 reply complete
  }
  ::close(fd);
  int status = -1;
  if (std::sscanf(reply.c_str(), "HTTP/1.%*d %d", &status) != 1) {
    error = "malformed reply";
    return -1;
  }
  const auto body_start = reply.find("\r\n\r\n");
  body = body_start == std::string::npos ? "" : reply.substr(body_start + 4);
  return status;
}

}  // namespace gm::exporter
