#include "receiver/buffered_http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/log.h"
#include "common/tsan.h"
#include "receiver/elastic_task_queue.h"

namespace hoist::receiver {
namespace {

// One recv() takes what the kernel has, up to this; a webhook delivery
// (headers and a JSON body of a few KB) usually arrives in one.
constexpr size_t kReadChunkBytes = size_t{16} * 1024;
// Blocking path: output is sent when the request is done, or earlier once
// this much is pending (large answers such as /metrics).
constexpr size_t kFlushAtBytes = size_t{64} * 1024;
// Blocking path: recv()/send() attempts per wait; a poll() that says ready
// and a call that still finds nothing (spurious wake-up) is retried, a
// bounded number of times.
constexpr int kAttempts = 3;
// Pipelined requests one connection may have answered before its thread
// turns to other ready connections.
constexpr int kMaxRequestsPerTurn = 16;
constexpr int64_t kNoDeadline = std::numeric_limits<int64_t>::max();

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int ToMillis(time_t sec, time_t usec) {
  const long long ms = static_cast<long long>(sec) * 1000 + usec / 1000;
  return static_cast<int>(std::clamp<long long>(ms, 0, INT_MAX));
}

// poll(2) on one socket, restarted after signals. >0 ready, 0 timed out,
// <0 error.
int WaitFor(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  return r;
}

using Address = std::pair<std::string, int>;

// The numeric address and port that `get` (getpeername or getsockname)
// reports for `sock`, as httplib reports them; ("", 0) when it fails.
Address AddressOf(socket_t sock, int (*get)(int, sockaddr*, socklen_t*)) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  char host[NI_MAXHOST] = {0};
  if (get(sock, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host,
                  sizeof(host), nullptr, 0, NI_NUMERICHOST) != 0) {
    return {"", 0};
  }
  int port = 0;
  if (addr.ss_family == AF_INET) {
    port = ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  } else if (addr.ss_family == AF_INET6) {
    port = ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  }
  return {host, port};
}

// What the buffered bytes of a connection hold.
struct Frame {
  enum Kind {
    kNeedMore,  // not a whole request yet
    kComplete,  // a whole request of `bytes` bytes
    kBlocking,  // a request that needs blocking reads (see the header)
  };
  Kind kind = kNeedMore;
  size_t bytes = 0;
  // The end of the request is not known for sure (an unreadable
  // Content-Length, headers over the limit): close after answering.
  bool close_after = false;
};

// Methods whose body httplib reads even without a Content-Length (until the
// peer closes).
bool ReadsBodyWithoutLength(absl::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH" ||
         method == "PRI" || method == "DELETE";
}

// The headers that decide where a request ends.
struct FramingHeaders {
  // Content-Length. (Not a std::optional: GCC's -O1 -Wmaybe-uninitialized,
  // as in the sanitizer builds, takes its value for uninitialized.)
  bool has_length = false;
  uint64_t length = 0;
  bool bad_length = false;  // unreadable, or more than one Content-Length
  bool chunked = false;     // any Transfer-Encoding
  bool expect_continue = false;
};

// Content-Length's value into `*n`: digits only (no sign, no spaces
// inside). False when it is not one.
bool ParseContentLength(absl::string_view value, uint64_t* n) {
  const bool digits =
      !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
        return absl::ascii_isdigit(c);
      });
  return digits && absl::SimpleAtoi(value, n);
}

// Reads the framing headers from `lines` (the header lines, CRLF-separated,
// without the request line).
FramingHeaders ParseFramingHeaders(absl::string_view lines) {
  FramingHeaders headers;
  for (absl::string_view line : absl::StrSplit(lines, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view name = line.substr(0, colon);
    const absl::string_view value =
        absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (absl::EqualsIgnoreCase(name, "Content-Length")) {
      uint64_t n = 0;
      if (headers.has_length || !ParseContentLength(value, &n)) {
        headers.bad_length = true;
      } else {
        headers.has_length = true;
        headers.length = n;
      }
    } else if (absl::EqualsIgnoreCase(name, "Transfer-Encoding")) {
      headers.chunked = true;
    } else if (absl::EqualsIgnoreCase(name, "Expect")) {
      headers.expect_continue = absl::EqualsIgnoreCase(value, "100-continue");
    }
  }
  return headers;
}

Frame FrameRequest(absl::string_view in) {
  const size_t head_end = in.find("\r\n\r\n");
  if (head_end == absl::string_view::npos) {
    if (in.size() > BufferedHttpServer::kMaxHeaderBytes) {
      return {Frame::kComplete, in.size(), /*close_after=*/true};
    }
    return {};
  }
  const size_t body_start = head_end + 4;
  const absl::string_view head = in.substr(0, head_end);
  const size_t line_end = head.find("\r\n");
  const absl::string_view method = head.substr(0, head.find(' '));
  const FramingHeaders headers =
      line_end == absl::string_view::npos
          ? FramingHeaders()
          : ParseFramingHeaders(head.substr(line_end + 2));
  if (headers.chunked) return {Frame::kBlocking};
  if (headers.bad_length) {
    return {Frame::kComplete, body_start, /*close_after=*/true};
  }
  if (!headers.has_length) {
    if (ReadsBodyWithoutLength(method)) return {Frame::kBlocking};
    return {Frame::kComplete, body_start};
  }
  if (headers.length > BufferedHttpServer::kMaxEventBodyBytes) {
    return {Frame::kBlocking};
  }
  if (in.size() - body_start >= headers.length) {
    return {Frame::kComplete, body_start + static_cast<size_t>(headers.length)};
  }
  if (headers.expect_continue) return {Frame::kBlocking};
  return {};
}

}  // namespace

struct BufferedHttpServer::Connection {
  Connection(socket_t s, size_t requests) : sock(s), requests_left(requests) {}

  const socket_t sock;
  // Bytes received and not yet answered; output not yet sent.
  std::string in;
  std::string out;
  size_t requests_left;            // of the keep-alive count
  int64_t request_started_ms = 0;  // when in's first byte came
  bool peer_closed = false;        // recv() returned 0
  bool close_after_flush = false;  // the last answer is in `out`
  bool maybe_more = true;          // the socket may hold unread bytes
  bool in_epoll = false;
  // When the sweep shuts the connection down; kNoDeadline while a thread
  // owns it. Written by the owner, read by the sweep.
  std::atomic<int64_t> deadline_ms{kNoDeadline};
  std::optional<Address> remote;
  std::optional<Address> local;

  const Address& Remote() {
    if (!remote) remote = AddressOf(sock, getpeername);
    return *remote;
  }
  const Address& Local() {
    if (!local) local = AddressOf(sock, getsockname);
    return *local;
  }
};

namespace {

using Connection = BufferedHttpServer::Connection;

// What both paths' streams share: reads from conn.in (bytes before pos_
// are consumed), output appended to conn.out, the connection's addresses.
class ConnectionStreamBase : public httplib::Stream {
 public:
  explicit ConnectionStreamBase(Connection& conn) : conn_(conn) {}

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    std::tie(ip, port) = conn_.Remote();
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    std::tie(ip, port) = conn_.Local();
  }
  socket_t socket() const override { return conn_.sock; }

 protected:
  // Copies up to `size` buffered bytes before conn.in[end] to `ptr`.
  ssize_t Take(char* ptr, size_t size, size_t end) {
    const size_t n = std::min(size, end - pos_);
    std::memcpy(ptr, conn_.in.data() + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  Connection& conn_;
  size_t pos_ = 0;  // conn.in[0, pos_) has been read
};

// Event path: the stream over one framed request at the start of conn.in.
// Reads never wait; past the frame is the end of input.
class FrameStream : public ConnectionStreamBase {
 public:
  FrameStream(Connection& conn, size_t frame_bytes)
      : ConnectionStreamBase(conn), end_(frame_bytes) {}

  bool is_readable() const override { return pos_ < end_; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    return Take(ptr, size, end_);
  }
  ssize_t write(const char* ptr, size_t size) override {
    conn_.out.append(ptr, size);
    return static_cast<ssize_t>(size);
  }

 private:
  const size_t end_;
};

// Blocking path: httplib::Stream over the connection's socket that reads
// through conn.in (bytes already buffered first, then a non-blocking recv(),
// then poll() only when nothing is there yet) and collects output in
// conn.out, sent by Flush() (or once kFlushAtBytes are pending). Used by one
// thread at a time.
class BlockingStream : public ConnectionStreamBase {
 public:
  BlockingStream(Connection& conn, int read_timeout_ms, int write_timeout_ms)
      : ConnectionStreamBase(conn),
        read_timeout_ms_(read_timeout_ms),
        write_timeout_ms_(write_timeout_ms) {}

  // Drops the bytes read so far from conn.in (the rest stays buffered for
  // the next request).
  ~BlockingStream() override { conn_.in.erase(0, pos_); }

  // Sends all pending output. False (and the output dropped) when the
  // socket fails or stays unwritable for the write timeout.
  bool Flush() {
    size_t sent = 0;
    int waits = 0;
    std::string& out = conn_.out;
    while (sent < out.size() && !failed_) {
      const ssize_t n = ::send(conn_.sock, out.data() + sent, out.size() - sent,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        waits = 0;
      } else if (!MaySendAgain(n, &waits)) {
        failed_ = true;
      }
    }
    out.clear();
    return !failed_;
  }

  bool is_readable() const override {
    return pos_ < conn_.in.size() ||
           WaitFor(conn_.sock, POLLIN, read_timeout_ms_) > 0;
  }

  // Writes are buffered; the socket's state is seen by Flush().
  bool is_writable() const override { return !failed_; }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == conn_.in.size()) {
      const ssize_t n = Fill();
      if (n <= 0) return n;
    }
    return Take(ptr, size, conn_.in.size());
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (failed_) return -1;
    conn_.out.append(ptr, size);
    if (conn_.out.size() >= kFlushAtBytes && !Flush()) return -1;
    return static_cast<ssize_t>(size);
  }

 private:
  // After a send() that returned `n` <= 0: true when it may be tried again
  // (it was interrupted, or the socket became writable within the write
  // timeout; at most kAttempts waits in a row, counted in `*waits`).
  bool MaySendAgain(ssize_t n, int* waits) const {
    if (n >= 0) return false;
    if (errno == EINTR) return true;
    return (errno == EAGAIN || errno == EWOULDBLOCK) && ++*waits <= kAttempts &&
           WaitFor(conn_.sock, POLLOUT, write_timeout_ms_) > 0;
  }

  // Appends to the fully read conn.in: a non-blocking recv(), and only when
  // nothing is there yet, pending output is sent (a client may be waiting
  // for "100 Continue") and poll() waits up to the read timeout. Returns the
  // bytes read, 0 when the peer closed, -1 on error or timeout.
  ssize_t Fill() {
    conn_.in.clear();
    pos_ = 0;
    char buffer[kReadChunkBytes];
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      const ssize_t n =
          ::recv(conn_.sock, buffer, sizeof(buffer), MSG_DONTWAIT);
      if (n >= 0) {
        conn_.in.append(buffer, static_cast<size_t>(n));
        return n;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (!Flush() || WaitFor(conn_.sock, POLLIN, read_timeout_ms_) <= 0) {
        return -1;
      }
    }
    return -1;
  }

  const int read_timeout_ms_;
  const int write_timeout_ms_;
  bool failed_ = false;  // a send failed; the connection is done
};

// httplib's accept loop hands each accepted socket to its task queue; this
// one runs the task (process_and_close_socket, which only registers the
// socket) at once on the accepting thread.
class InlineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

// Markers in epoll_event.data.ptr for the two non-connection descriptors.
char wake_marker;
char timer_marker;

}  // namespace

BufferedHttpServer::BufferedHttpServer(Options options)
    : options_(options),
      blocking_(std::make_unique<ElasticTaskQueue>(
          0, static_cast<size_t>(std::max(options_.blocking_threads, 1)),
          absl::Seconds(30))) {
  new_task_queue = [] { return new InlineTaskQueue(); };
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0 || timer_fd_ < 0) {
    // Without them no connection can be served; say why once, loudly.
    LogError("webhook HTTP server cannot create its event descriptors",
             {{"error", std::strerror(errno)}});
    return;
  }
  epoll_event wake{};
  wake.events = EPOLLIN;  // level-triggered: wakes every thread, once set
  wake.data.ptr = &wake_marker;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake);
  epoll_event timer{};
  timer.events = EPOLLIN;
  timer.data.ptr = &timer_marker;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &timer);
  for (int i = 0; i < std::max(options_.event_threads, 1); ++i) {
    event_threads_.emplace_back([this] { EventLoop(); });
  }
}

BufferedHttpServer::~BufferedHttpServer() {
  Shutdown();
  absl::MutexLock lock(&mu_);
  for (Connection* conn : open_) {
    ::close(conn->sock);
    delete conn;
  }
  open_.clear();
  for (int fd : {epoll_fd_, wake_fd_, timer_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

void BufferedHttpServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  CloseConnections();
  stopping_.store(true);
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
  for (std::thread& t : event_threads_) t.join();
  event_threads_.clear();
  // Their connections were shut down, so their requests end soon.
  blocking_->shutdown();
}

void BufferedHttpServer::CloseConnections() {
  absl::MutexLock lock(&mu_);
  closing_.store(true);
  for (Connection* conn : open_) ::shutdown(conn->sock, SHUT_RDWR);
}

size_t BufferedHttpServer::open_connections() const {
  absl::MutexLock lock(&mu_);
  return open_.size();
}

int BufferedHttpServer::ReadTimeoutMs() const {
  return ToMillis(read_timeout_sec_, read_timeout_usec_);
}
int BufferedHttpServer::WriteTimeoutMs() const {
  return ToMillis(write_timeout_sec_, write_timeout_usec_);
}
int BufferedHttpServer::KeepAliveMs() const {
  return ToMillis(keep_alive_timeout_sec_, 0);
}

bool BufferedHttpServer::Closing() const {
  return closing_.load(std::memory_order_relaxed) ||
         svr_sock_ == INVALID_SOCKET;
}

bool BufferedHttpServer::process_and_close_socket(socket_t sock) {
  auto conn = std::make_unique<Connection>(
      sock, std::max<size_t>(keep_alive_max_count_, 1));
  {
    absl::MutexLock lock(&mu_);
    if (closing_.load() || epoll_fd_ < 0 ||
        open_.size() >= static_cast<size_t>(options_.max_connections)) {
      ::shutdown(sock, SHUT_RDWR);
      ::close(sock);
      return false;
    }
    if (open_.empty()) {
      // Deadlines matter again: check them every kSweepInterval.
      const long sweep_ns = absl::ToInt64Nanoseconds(kSweepInterval);
      itimerspec every{};
      every.it_interval.tv_sec = sweep_ns / 1000000000;
      every.it_interval.tv_nsec = sweep_ns % 1000000000;
      every.it_value = every.it_interval;
      ::timerfd_settime(timer_fd_, 0, &every, nullptr);
    }
    open_.insert(conn.get());
  }
  Connection& c = *conn.release();
  Arm(c, EPOLLIN, NowMs() + KeepAliveMs());
  return true;
}

void BufferedHttpServer::EventLoop() {
  while (!stopping_.load()) {
    epoll_event event;
    const int n = ::epoll_wait(epoll_fd_, &event, 1, -1);
    if (n <= 0) continue;  // EINTR
    if (event.data.ptr == &wake_marker) continue;
    if (event.data.ptr == &timer_marker) {
      uint64_t expirations = 0;
      // Several threads may wake for one expiry; one reads it and sweeps.
      if (::read(timer_fd_, &expirations, sizeof(expirations)) ==
          sizeof(expirations)) {
        Sweep(NowMs());
      }
      continue;
    }
    Connection& conn = *static_cast<Connection*>(event.data.ptr);
    TsanAcquire(&conn);
    conn.deadline_ms.store(kNoDeadline, std::memory_order_relaxed);
    conn.maybe_more = true;
    Serve(conn);
  }
}

void BufferedHttpServer::Serve(Connection& conn) {
  int answered = 0;
  while (true) {
    if (!conn.out.empty()) {
      if (!SendSome(conn)) return;
      continue;
    }
    if (conn.close_after_flush) {
      Close(conn);
      return;
    }
    const Frame frame = conn.in.empty() ? Frame() : FrameRequest(conn.in);
    if (frame.kind == Frame::kBlocking) {
      // The connection stays in the epoll set, disabled (one-shot) until
      // the blocking thread re-arms it.
      blocking_->enqueue([this, c = &conn] { ServeBlocking(*c); });
      return;
    }
    if (frame.kind == Frame::kNeedMore) {
      if (!ReadSome(conn)) return;
      continue;
    }
    if (answered == kMaxRequestsPerTurn) {
      // Let other ready connections have this thread. EPOLLOUT: the socket
      // is writable, so the event comes back at once, even with nothing new
      // to read.
      Arm(conn, EPOLLOUT, NowMs() + WriteTimeoutMs());
      return;
    }
    ++answered;
    if (!Answer(conn, frame.bytes) || frame.close_after) {
      conn.close_after_flush = true;
    }
    if (!conn.in.empty()) conn.request_started_ms = NowMs();
  }
}

bool BufferedHttpServer::SendSome(Connection& conn) {
  const ssize_t n = ::send(conn.sock, conn.out.data(), conn.out.size(),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n > 0) {
    conn.out.erase(0, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && errno == EINTR) return true;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    Arm(conn, EPOLLOUT, NowMs() + WriteTimeoutMs());
    return false;
  }
  Close(conn);
  return false;
}

bool BufferedHttpServer::ReadSome(Connection& conn) {
  if (conn.peer_closed) {
    Close(conn);
    return false;
  }
  if (!conn.maybe_more) {
    // Drained: wait for more, within the keep-alive timeout between
    // requests, or the read timeout from the request's first byte.
    Arm(conn, EPOLLIN,
        conn.in.empty() ? NowMs() + KeepAliveMs()
                        : conn.request_started_ms + ReadTimeoutMs());
    return false;
  }
  char buffer[kReadChunkBytes];
  const ssize_t n = ::recv(conn.sock, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n > 0) {
    if (conn.in.empty()) conn.request_started_ms = NowMs();
    conn.in.append(buffer, static_cast<size_t>(n));
    conn.maybe_more = static_cast<size_t>(n) == sizeof(buffer);
  } else if (n == 0) {
    conn.peer_closed = true;
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    conn.maybe_more = false;
  } else if (errno != EINTR) {
    Close(conn);
    return false;
  }
  return true;
}

bool BufferedHttpServer::Answer(Connection& conn, size_t frame_bytes) {
  const bool last = conn.requests_left <= 1 || Closing();
  bool connection_closed = false;
  bool ok;
  {
    FrameStream strm(conn, frame_bytes);
    ok = process_request(strm, last, connection_closed, nullptr);
  }
  conn.in.erase(0, frame_bytes);
  --conn.requests_left;
  return ok && !connection_closed && !last;
}

void BufferedHttpServer::ServeBlocking(Connection& conn) {
  bool keep = false;
  if (!Closing()) {
    BlockingStream strm(conn, ReadTimeoutMs(), WriteTimeoutMs());
    const bool last = conn.requests_left <= 1;
    bool connection_closed = false;
    keep = process_request(strm, last, connection_closed, nullptr);
    --conn.requests_left;
    if (!strm.Flush()) keep = false;
    keep = keep && !connection_closed && !last;
  }
  if (!keep) {
    Close(conn);
    return;
  }
  // Back to the event path. Bytes of a next request may be buffered
  // already; then EPOLLOUT brings the connection back at once.
  conn.maybe_more = false;
  if (conn.in.empty()) {
    Arm(conn, EPOLLIN, NowMs() + KeepAliveMs());
  } else {
    conn.request_started_ms = NowMs();
    Arm(conn, EPOLLOUT, conn.request_started_ms + ReadTimeoutMs());
  }
}

void BufferedHttpServer::Arm(Connection& conn, uint32_t events,
                             int64_t deadline_ms) {
  conn.deadline_ms.store(deadline_ms, std::memory_order_relaxed);
  epoll_event event{};
  event.events = events | EPOLLONESHOT;
  event.data.ptr = &conn;
  const int op = conn.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  conn.in_epoll = true;
  // After this call another thread may own `conn`: it is not touched again.
  TsanRelease(&conn);
  if (::epoll_ctl(epoll_fd_, op, conn.sock, &event) != 0) {
    conn.deadline_ms.store(kNoDeadline, std::memory_order_relaxed);
    LogWarning("webhook connection dropped: cannot watch its socket",
               {{"error", std::strerror(errno)}});
    Close(conn);
  }
}

void BufferedHttpServer::Close(Connection& conn) {
  {
    absl::MutexLock lock(&mu_);
    open_.erase(&conn);
  }
  ::shutdown(conn.sock, SHUT_RDWR);
  ::close(conn.sock);  // also leaves the epoll set
  delete &conn;
}

void BufferedHttpServer::Sweep(int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  if (open_.empty()) {
    itimerspec off{};
    ::timerfd_settime(timer_fd_, 0, &off, nullptr);
    return;
  }
  for (Connection* conn : open_) {
    // Its owner (the thread the shutdown wakes) closes it.
    if (conn->deadline_ms.load(std::memory_order_relaxed) <= now_ms) {
      ::shutdown(conn->sock, SHUT_RDWR);
    }
  }
}

}  // namespace hoist::receiver
