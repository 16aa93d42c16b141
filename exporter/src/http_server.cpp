#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "gm/errno_text.h"
#include "gm/listen_address.h"
#include "gm/unique_fd.h"
#include "slab_pool.h"

namespace gm::exporter {

namespace {

namespace asio = boost::asio;
using Protocol = asio::generic::stream_protocol;
using Socket = Protocol::socket;
using Acceptor = asio::basic_socket_acceptor<Protocol>;
using SteadyClock = std::chrono::steady_clock;
using boost::system::error_code;

std::string Errno(const std::string& what) { return what + ": " + gm::ErrnoText(errno); }

void SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/// Logs a condition at most once a minute, with how often it recurred since:
/// a flood of refused connections must not become a flood of log lines.
struct BurstLog {
  SteadyClock::time_point last{};
  uint64_t since = 0;
  bool logged_once = false;
  template <typename F>
  void operator()(F&& log) {
    const auto now = SteadyClock::now();
    if (logged_once && now - last < std::chrono::minutes(1)) {
      ++since;
      return;
    }
    log(since);
    logged_once = true;
    last = now;
    since = 0;
  }
};

bool OutOfDescriptors(const error_code& ec) {
  return ec == asio::error::no_descriptors ||
         ec == boost::system::errc::too_many_files_open_in_system ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

}  // namespace

struct Listener {
  const char* kind;  // "tcp" or "unix", for logs
  Acceptor acceptor;
  asio::steady_timer pause;
  size_t budget;
  size_t open = 0;
  BurstLog full_log;
  BurstLog fd_log;
  HttpListenerStats stats;
  Listener(asio::io_context& io, const char* k, size_t b)
      : kind(k), acceptor(io), pause(io), budget(b) {
    stats.listener = k;
  }
};

struct HttpServer::Impl {
  HttpServerOptions options;
  Handler handler;
  Tick tick;
  // Per-connection memory (slab_pool.h). Declared before `io`: destroying
  // the context frees its pending operations into it.
  SlabPool pool;
  asio::io_context io{1};
  std::unique_ptr<Listener> unix_listener;
  std::unique_ptr<Listener> tcp_listener;
  UniqueFd wake_fd;
  asio::posix::stream_descriptor wake{io};
  asio::posix::stream_descriptor tick_sd{io};
  std::atomic<bool> stop{false};
  int tcp_port = 0;
  char buf[4096];  // every connection reads through it: the loop runs one read at a time

  void Accept(Listener& l);
  void WaitWake();
  void WaitTick();
};

namespace {

// A completion handler whose operation memory asio takes from the server's
// SlabPool (asio asks a handler for its associated allocator).
template <typename F>
struct Pooled {
  using allocator_type = SlabAllocator<void>;
  allocator_type get_allocator() const noexcept { return allocator_type(*pool); }
  template <typename... Args>
  void operator()(Args&&... args) {
    f(std::forward<Args>(args)...);
  }
  SlabPool* pool;
  F f;
};

template <typename F>
Pooled<F> InPool(SlabPool& pool, F f) {
  return Pooled<F>{&pool, std::move(f)};
}

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(HttpServer::Impl& server, Listener& listener, Socket socket)
      : server_(server),
        listener_(listener),
        sock_(std::move(socket)),
        timer_(server.io),
        ex_(server.handler) {}

  void Start() {
    error_code ec;
    sock_.non_blocking(true, ec);
    // The first request's deadline runs from the accept: a connection that
    // says nothing holds its slot no longer than one that says too little.
    SetDeadline(server_.options.request_timeout, true);
    WaitRead();
  }

 private:
  void SetDeadline(std::chrono::milliseconds d, bool request) {
    request_deadline_ = request;
    timer_.expires_after(d);  // cancels the previous wait
    timer_.async_wait(InPool(server_.pool, [self = shared_from_this()](const error_code& ec) {
      // Aborted: the deadline moved or the connection closed (maybe just
      // after the timer expired: then it was not cut by it).
      if (ec || self->closed_) return;
      auto& stats = self->listener_.stats;
      ++(self->request_deadline_ ? stats.request_timeouts : stats.idle_timeouts);
      self->Close();
    }));
  }

  void WaitRead() {
    sock_.async_wait(Socket::wait_read,
                     InPool(server_.pool, [self = shared_from_this()](const error_code& ec) {
                       if (ec) return self->Close();
                       self->OnReadable();
                     }));
  }

  void OnReadable() {
    for (;;) {
      const size_t want = std::min(ex_.wanted(), sizeof server_.buf);
      error_code ec;
      const size_t n = sock_.read_some(asio::buffer(server_.buf, want), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) return WaitRead();
      if (ec || n == 0) return Close();  // end of stream or a reset
      ex_.Feed(std::string_view(server_.buf, n));
      // Bytes of a new request start its deadline; later bytes never move it.
      if (!request_deadline_) SetDeadline(server_.options.request_timeout, true);
      if (ex_.response_ready()) return Write();
      if (ex_.closing()) return Close();
    }
  }

  void Write() {
    // Nothing is read while this is unsent: a client that does not read its
    // responses stops being read from, and costs this one response.
    asio::async_write(
        sock_, asio::buffer(ex_.response()),
        InPool(server_.pool,
               [self = shared_from_this()](const error_code& ec, size_t) { self->Written(ec); }));
  }

  void Written(const error_code& ec) {
    if (ec) return Close();
    ex_.ResponseSent();
    if (ex_.response_ready()) {  // the next pipelined request, already complete
      SetDeadline(server_.options.request_timeout, true);
      return Write();
    }
    if (ex_.closing()) {
      error_code ignored;
      sock_.shutdown(Socket::shutdown_send, ignored);
      return Close();
    }
    if (ex_.mid_request()) {
      SetDeadline(server_.options.request_timeout, true);
    } else {
      SetDeadline(server_.options.idle_timeout, false);
    }
    WaitRead();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    sock_.close(ignored);
    timer_.cancel();
    --listener_.open;
  }

  HttpServer::Impl& server_;
  Listener& listener_;
  Socket sock_;
  asio::steady_timer timer_;
  HttpSession ex_;
  bool request_deadline_ = false;
  bool closed_ = false;
};

void Listen(Acceptor& acceptor, const Protocol::endpoint& ep, bool dual_stack, int backlog,
            error_code& ec) {
  acceptor.open(ep.protocol(), ec);
  if (ec) return;
  if (ep.protocol().family() != AF_UNIX) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (dual_stack) acceptor.set_option(asio::ip::v6_only(false), ec);
  }
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(backlog, ec);
  if (ec) {
    error_code ignored;
    acceptor.close(ignored);
  }
}

}  // namespace

void HttpServer::Impl::Accept(Listener& l) {
  l.acceptor.async_accept([this, &l](const error_code& ec, Socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (OutOfDescriptors(ec)) {
      ++l.stats.accept_pauses;
      // Level-triggered readiness would report the pending connection again
      // at once: pause instead, and let closing connections free descriptors.
      l.fd_log([&](uint64_t since) {
        spdlog::warn(
            "out of file descriptors accepting on the {} listener ({}); pausing accepts for {} ms "
            "({} more times since the last message)",
            l.kind, ec.message(), options.accept_pause.count(), since);
      });
      l.pause.expires_after(options.accept_pause);
      l.pause.async_wait([this, &l](const error_code& e) {
        if (!e) Accept(l);
      });
      return;
    }
    if (!ec) {
      if (l.open >= l.budget) {
        // Refuse rather than queue: the client learns at once, and memory stays bounded.
        ++l.stats.refused;
        l.full_log([&](uint64_t since) {
          spdlog::warn(
              "{} connection budget ({}) full; refusing connections ({} more since the last "
              "message)",
              l.kind, l.budget, since);
        });
      } else {
        ++l.open;
        if (&l == tcp_listener.get()) {
          error_code ignored;
          socket.set_option(asio::ip::tcp::no_delay(true), ignored);
        }
        std::allocate_shared<Conn>(SlabAllocator<Conn>(pool), *this, l, std::move(socket))->Start();
      }
    }
    Accept(l);  // other errors (a connection reset before accept) concern one client only
  });
}

void HttpServer::Impl::WaitWake() {
  wake.async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec) return;
    if (stop) {
      io.stop();
      return;
    }
    uint64_t v = 0;
    [[maybe_unused]] const auto n = ::read(wake_fd.get(), &v, sizeof v);
    WaitWake();
  });
}

void HttpServer::Impl::WaitTick() {
  tick_sd.async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec) return;
    tick();
    WaitTick();
  });
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler, Tick tick)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.options = std::move(options);
  s.handler = std::move(handler);
  s.tick = std::move(tick);
  s.wake_fd.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!s.wake_fd) throw std::runtime_error(Errno("eventfd"));
  s.wake.assign(::dup(s.wake_fd.get()));

  if (!s.options.unix_socket.empty()) {
    if (s.options.unix_socket.size() >= sizeof(sockaddr_un::sun_path)) {
      throw std::runtime_error("unix socket path '" + s.options.unix_socket + "' is too long");
    }
    s.unix_listener = std::make_unique<Listener>(s.io, "unix", s.options.max_unix_connections);
    ::unlink(s.options.unix_socket.c_str());  // a socket file left by a previous run
    error_code ec;
    Listen(s.unix_listener->acceptor, asio::local::stream_protocol::endpoint(s.options.unix_socket),
           false, 64, ec);
    if (ec)
      throw std::runtime_error("cannot listen on unix socket '" + s.options.unix_socket +
                               "': " + ec.message());
  }

  if (!s.options.listen_address.empty()) {
    const gm::ListenAddress addr = gm::ParseListenAddress(s.options.listen_address);
    s.tcp_listener = std::make_unique<Listener>(s.io, "tcp", s.options.max_tcp_connections);
    error_code ec;
    if (addr.host.empty()) {
      // Every interface: dual-stack [::], or 0.0.0.0 on a host without IPv6.
      Listen(s.tcp_listener->acceptor, asio::ip::tcp::endpoint(asio::ip::tcp::v6(), addr.port),
             true, 128, ec);
      if (ec == asio::error::address_family_not_supported ||
          ec == boost::system::errc::address_not_available) {
        Listen(s.tcp_listener->acceptor, asio::ip::tcp::endpoint(asio::ip::tcp::v4(), addr.port),
               false, 128, ec);
      }
    } else {
      auto ip = asio::ip::make_address(addr.host, ec);
      if (ec) {
        asio::ip::tcp::resolver resolver(s.io);
        const auto found = resolver.resolve(
            addr.host, std::to_string(addr.port),
            asio::ip::resolver_base::passive | asio::ip::resolver_base::numeric_service, ec);
        if (ec || found.empty()) {
          throw std::runtime_error("cannot resolve listen address '" + s.options.listen_address +
                                   "': " + (ec ? ec.message() : "no address"));
        }
        ip = found.begin()->endpoint().address();
      }
      Listen(s.tcp_listener->acceptor, asio::ip::tcp::endpoint(ip, addr.port), false, 128, ec);
    }
    if (ec)
      throw std::runtime_error("cannot listen on '" + s.options.listen_address +
                               "': " + ec.message());
    error_code ignored;
    const auto bound = s.tcp_listener->acceptor.local_endpoint(ignored);
    const auto* sa = reinterpret_cast<const sockaddr*>(bound.data());
    s.tcp_port =
        ntohs(sa->sa_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  }

  // A tick fd without a tick would stay readable and wake the loop for nothing.
  if (s.tick && s.options.tick_fd >= 0) {
    const int fd =
        ::dup(s.options.tick_fd);  // the descriptor owns its copy; the caller keeps the original
    if (fd < 0) throw std::runtime_error(Errno("dup"));
    s.tick_sd.assign(fd);
  }
}

HttpServer::~HttpServer() {
  if (!impl_->options.unix_socket.empty() && impl_->unix_listener)
    ::unlink(impl_->options.unix_socket.c_str());
  const UniqueFd wake_fd = std::move(impl_->wake_fd);
  impl_.reset();  // closes every connection before the wake descriptor goes
}

void HttpServer::Run() {
  Impl& s = *impl_;
  if (s.unix_listener) s.Accept(*s.unix_listener);
  if (s.tcp_listener) s.Accept(*s.tcp_listener);
  s.WaitWake();
  if (s.tick_sd.is_open()) s.WaitTick();
  s.io.run();
}

void HttpServer::Stop() {
  impl_->stop = true;
  const uint64_t one = 1;
  [[maybe_unused]] const auto n =
      ::write(impl_->wake_fd.get(), &one, sizeof one);  // async-signal-safe
}

void HttpServer::Ping(std::function<void()> done) { asio::post(impl_->io, std::move(done)); }

int HttpServer::tcp_port() const { return impl_->tcp_port; }
size_t HttpServer::open_tcp() const { return impl_->tcp_listener ? impl_->tcp_listener->open : 0; }
size_t HttpServer::open_unix() const {
  return impl_->unix_listener ? impl_->unix_listener->open : 0;
}

std::vector<HttpListenerStats> HttpServer::stats() const {
  std::vector<HttpListenerStats> out;
  for (const auto* l : {impl_->unix_listener.get(), impl_->tcp_listener.get()}) {
    if (l != nullptr) out.push_back(l->stats);
  }
  return out;
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
  const UniqueFd owner(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd = owner.get();
  if (!owner) {
    error = Errno("socket");
    return -1;
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    error = Errno("cannot connect to " + socket_path);
    return -1;
  }
  SetNonBlocking(fd);
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  size_t sent = 0;
  std::string reply;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error = "no answer within " + std::to_string(timeout.count()) + " ms";
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
