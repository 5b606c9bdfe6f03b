#include "receiver/buffered_http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace hoist::receiver {
namespace {

// One recv() takes what the kernel has, up to this; a webhook delivery
// (headers and a JSON body of a few KB) usually arrives in one.
constexpr size_t kReadBufferBytes = 16 * 1024;
// Output is sent when the request is done, or earlier once this much is
// pending (large answers such as /metrics).
constexpr size_t kFlushAtBytes = 64 * 1024;
// recv()/send() attempts per wait: a poll() that says ready and a call that
// still finds nothing (spurious wake-up) is retried, a bounded number of
// times.
constexpr int kAttempts = 3;

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

// The numeric address and port that `get` (getpeername or getsockname)
// reports for `sock`, as httplib reports them; ("", 0) when it fails.
std::pair<std::string, int> AddressOf(socket_t sock,
                                      int (*get)(int, sockaddr*, socklen_t*)) {
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

// httplib::Stream over one connection's socket, with a read buffer and an
// output buffer (see the header). Used by one thread at a time.
class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(socket_t sock, int read_timeout_ms, int write_timeout_ms)
      : sock_(sock),
        read_timeout_ms_(read_timeout_ms),
        write_timeout_ms_(write_timeout_ms) {}

  // True once the next request's first bytes are buffered; false when the
  // peer closed, on an error, or after `timeout_ms` without data.
  bool WaitForRequest(int timeout_ms) {
    return begin_ < end_ || Fill(timeout_ms) > 0;
  }

  // Sends all pending output. False (and the output dropped) when the
  // socket fails or stays unwritable for the write timeout.
  bool Flush() {
    size_t sent = 0;
    int waits = 0;
    while (sent < out_.size() && !failed_) {
      const ssize_t n = ::send(sock_, out_.data() + sent, out_.size() - sent,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        waits = 0;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
                 ++waits <= kAttempts &&
                 WaitFor(sock_, POLLOUT, write_timeout_ms_) > 0) {
        continue;
      } else {
        failed_ = true;
      }
    }
    out_.clear();
    return !failed_;
  }

  bool is_readable() const override {
    return begin_ < end_ || WaitFor(sock_, POLLIN, read_timeout_ms_) > 0;
  }

  // Writes are buffered; the socket's state is seen by Flush().
  bool is_writable() const override { return !failed_; }

  ssize_t read(char* ptr, size_t size) override {
    if (begin_ == end_) {
      const ssize_t n = Fill(read_timeout_ms_);
      if (n <= 0) return n;
    }
    const size_t n = std::min(size, end_ - begin_);
    std::memcpy(ptr, buffer_ + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (failed_) return -1;
    out_.append(ptr, size);
    if (out_.size() >= kFlushAtBytes && !Flush()) return -1;
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    if (!remote_) remote_ = AddressOf(sock_, getpeername);
    std::tie(ip, port) = *remote_;
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    if (!local_) local_ = AddressOf(sock_, getsockname);
    std::tie(ip, port) = *local_;
  }

  socket_t socket() const override { return sock_; }

 private:
  // Refills the empty read buffer: a non-blocking recv(), and only when
  // nothing is there yet, pending output is sent (a client may be waiting
  // for "100 Continue") and poll() waits up to `timeout_ms`. Returns the
  // bytes read, 0 when the peer closed, -1 on error or timeout.
  ssize_t Fill(int timeout_ms) {
    begin_ = end_ = 0;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      const ssize_t n = ::recv(sock_, buffer_, sizeof(buffer_), MSG_DONTWAIT);
      if (n >= 0) {
        end_ = static_cast<size_t>(n);
        return n;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (!Flush() || WaitFor(sock_, POLLIN, timeout_ms) <= 0) return -1;
    }
    return -1;
  }

  const socket_t sock_;
  const int read_timeout_ms_;
  const int write_timeout_ms_;
  char buffer_[kReadBufferBytes];
  size_t begin_ = 0;  // unread bytes are buffer_[begin_, end_)
  size_t end_ = 0;
  std::string out_;
  bool failed_ = false;  // a send failed; the connection is done
  mutable std::optional<std::pair<std::string, int>> remote_;
  mutable std::optional<std::pair<std::string, int>> local_;
};

}  // namespace

void BufferedHttpServer::CloseConnections() {
  absl::MutexLock lock(&mu_);
  closing_ = true;
  for (socket_t sock : open_) ::shutdown(sock, SHUT_RDWR);
}

bool BufferedHttpServer::Register(socket_t sock) {
  absl::MutexLock lock(&mu_);
  if (closing_) return false;
  open_.insert(sock);
  return true;
}

void BufferedHttpServer::Unregister(socket_t sock) {
  absl::MutexLock lock(&mu_);
  open_.erase(sock);
}

// The loop of httplib's process_server_socket_core(), over
// ConnectionStream: at most keep_alive_max_count_ requests, each awaited
// for keep_alive_timeout_sec_, the last one answered with
// "Connection: close".
bool BufferedHttpServer::process_and_close_socket(socket_t sock) {
  bool ret = false;
  if (Register(sock)) {
    ConnectionStream strm(sock, ToMillis(read_timeout_sec_, read_timeout_usec_),
                          ToMillis(write_timeout_sec_, write_timeout_usec_));
    const int keep_alive_ms = ToMillis(keep_alive_timeout_sec_, 0);
    for (size_t count = keep_alive_max_count_;
         count > 0 && svr_sock_ != INVALID_SOCKET; --count) {
      if (!strm.WaitForRequest(keep_alive_ms)) break;
      bool connection_closed = false;
      ret = process_request(strm, count == 1, connection_closed, nullptr);
      if (!strm.Flush()) ret = false;
      if (!ret || connection_closed) break;
    }
    Unregister(sock);
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

}  // namespace hoist::receiver
