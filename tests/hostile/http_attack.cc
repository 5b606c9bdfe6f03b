#include "tests/hostile/http_attack.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hoist::hostile {
namespace {

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

bool SendAll(int fd, const std::string& data, absl::Time deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    pollfd p{fd, POLLOUT, 0};
    const int wait_ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0 || poll(&p, 1, wait_ms) <= 0) return false;
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads until EOF, error or deadline; returns what arrived.
std::string ReadUntilClose(int fd, absl::Time deadline) {
  std::string out;
  char buf[4096];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    const int wait_ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0 || poll(&p, 1, wait_ms) <= 0) break;
    const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

int StatusOf(const std::string& response) {
  // "HTTP/1.1 202 Accepted"
  if (response.size() < 12 || response.compare(0, 5, "HTTP/") != 0) return -1;
  int code = -1;
  if (!absl::SimpleAtoi(response.substr(9, 3), &code)) return -1;
  return code;
}

}  // namespace

int Exchange(int port, const std::string& request, absl::Duration timeout,
             std::string* response) {
  const absl::Time deadline = absl::Now() + timeout;
  const int fd = Connect(port);
  if (fd < 0) return -1;
  std::string answer;
  if (SendAll(fd, request, deadline)) answer = ReadUntilClose(fd, deadline);
  close(fd);
  if (response != nullptr) *response = answer;
  return StatusOf(answer);
}

std::string PostRequest(const std::string& path,
                        const std::vector<std::string>& headers,
                        const std::string& body) {
  std::string r = absl::StrCat("POST ", path,
                               " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Content-Type: application/json\r\n"
                               "Connection: close\r\n"
                               "Content-Length: ",
                               body.size(), "\r\n");
  for (const std::string& h : headers) absl::StrAppend(&r, h, "\r\n");
  absl::StrAppend(&r, "\r\n", body);
  return r;
}

HttpAttack::HttpAttack(AttackOptions options) : options_(std::move(options)) {}

HttpAttack::~HttpAttack() { Stop(); }

void HttpAttack::Start() {
  threads_.emplace_back([this] { SlowLoris(); });
  for (int i = 0; i < options_.flood_threads; ++i) {
    threads_.emplace_back([this, i] { Flood(i); });
  }
}

void HttpAttack::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

bool HttpAttack::WaitUntilUnderWay(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (open_.load() >= options_.slowloris + options_.stalled_bodies &&
        rounds_done_.load() >= options_.flood_threads) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));  // polling another thread's state
  }
  return false;
}

// Holds `slowloris` connections sending header bytes one at a time, and
// `stalled_bodies` connections that promised more body than they sent.
// Reconnects any the server closes, until Stop().
void HttpAttack::SlowLoris() {
  const std::string head = absl::StrCat(
      "POST ", options_.path,
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n");
  const std::string trickle = "X-Slow-Loris: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  struct Conn {
    int fd = -1;
    size_t sent = 0;
    bool stall = false;  // lying-body connection
  };
  const int total = options_.slowloris + options_.stalled_bodies;
  std::vector<Conn> conns(static_cast<size_t>(total));
  for (int i = 0; i < total; ++i) conns[i].stall = i >= options_.slowloris;
  const std::string stalled =
      absl::StrCat(head, "Content-Length: 4000\r\n", options_.auth_header,
                   ": x\r\n\r\n{\"domain\":");
  absl::Time next_trickle = absl::Now();
  while (!stop_) {
    const bool trickle_now = absl::Now() >= next_trickle;
    if (trickle_now) next_trickle = absl::Now() + options_.slowloris_interval;
    for (Conn& c : conns) {
      if (stop_) break;
      if (c.fd >= 0) {
        // The server may have given up on it: reconnect.
        char b;
        const ssize_t n = recv(c.fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
          close(c.fd);
          c.fd = -1;
          --open_;
        } else if (n > 0) {
          // An answer (e.g. 408/400): this one is done; start over.
          close(c.fd);
          c.fd = -1;
          --open_;
        }
      }
      if (c.fd < 0) {
        c.fd = Connect(options_.port);
        if (c.fd < 0) continue;
        ++open_;
        c.sent = 0;
        const std::string& first = c.stall ? stalled : head;
        if (!SendAll(c.fd, first, absl::Now() + absl::Seconds(1))) {
          close(c.fd);
          c.fd = -1;
          --open_;
        }
        continue;
      }
      if (trickle_now && !c.stall) {
        const char byte = trickle[c.sent % trickle.size()];
        if (send(c.fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) ++c.sent;
      }
    }
    absl::SleepFor(absl::Milliseconds(50));  // pacing of the trickle
  }
  for (Conn& c : conns) {
    if (c.fd >= 0) close(c.fd);
  }
  open_ = 0;
}

void HttpAttack::Flood(int index) {
  const std::string& path = options_.path;
  const std::string big_header =
      absl::StrCat("X-Big: ", std::string(64 * 1024, 'A'));
  std::string many_headers;
  for (int i = 0; i < 5000; ++i)
    absl::StrAppend(&many_headers, "X-H", i, ": v\r\n");
  const std::vector<std::string> malformed = {
      "GARBAGE\r\n\r\n",
      absl::StrCat("POST  HTTP/1.1\r\n\r\n"),
      absl::StrCat("POST ", path, " HTTP/9.9\r\nHost: x\r\n\r\n"),
      absl::StrCat("POST ", path, " HTTP/1.1\r\nNoColonHere\r\n\r\n"),
      absl::StrCat("POST ", path, " HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
      absl::StrCat("POST ", path,
                   " HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
      absl::StrCat("POST ", path,
                   " HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
      std::string("\x00\x01\x02\xff\xfe\r\n\r\n", 9),
      absl::StrCat("POST /", std::string(20000, 'p'), " HTTP/1.1\r\n\r\n"),
  };
  const std::string& body = options_.forged_body;
  // Servers may not answer the odd requests at all; do not wait long.
  const absl::Duration timeout = absl::Seconds(1);
  // Even threads flood forged deliveries, odd threads send the oversized,
  // malformed and lying requests (which may cost a timeout each).
  const bool forger = index % 2 == 0 || options_.flood_threads == 1;
  for (int i = 0; i < options_.max_iterations && !stop_; ++i) {
    if (forger) {
      // Forged deliveries: wrong token, no token, bogus signature.
      for (const std::string& auth :
           {absl::StrCat(options_.auth_header, ": forged-", index, "-", i),
            std::string(),
            absl::StrCat(options_.auth_header, ": ", std::string(64, 'f'))}) {
        std::vector<std::string> headers;
        if (!auth.empty()) headers.push_back(auth);
        const int code =
            Exchange(options_.port, PostRequest(path, headers, body), timeout);
        ++flood_requests_;
        if (code == 401) {
          ++forged_401_;
        } else if (code >= 200 && code < 300) {
          ++forged_2xx_;
        }
      }
    } else {
      // Oversized headers.
      Exchange(options_.port, PostRequest(path, {big_header}, body), timeout);
      Exchange(options_.port,
               absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\n",
                            many_headers, "Content-Length: 2\r\n\r\n{}"),
               timeout);
      // Malformed request lines and headers.
      Exchange(options_.port,
               malformed[static_cast<size_t>(i) % malformed.size()], timeout);
      // A body longer than its Content-Length (the rest is a bogus request).
      Exchange(options_.port,
               absl::StrCat("POST ", path,
                            " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n",
                            options_.auth_header, ": forged\r\n\r\n{}",
                            std::string(500, 'Z'), "\r\n\r\n"),
               timeout);
      flood_requests_ += 4;
    }
    if (i == 0) ++rounds_done_;
  }
}

}  // namespace hoist::hostile
