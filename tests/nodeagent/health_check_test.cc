// ProbeHttp against canned HTTP servers on loopback, ProbeTcp against
// loopback sockets, and the schedule of health probes after a new container
// started (HealthProbePause).
#include "nodeagent/health_check.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hoist::nodeagent {
namespace {

using ::testing::HasSubstr;

// Accepts connections one at a time (at most 16), reads a request's headers
// (probes send no body), writes `answer` and closes.
class CannedServer {
 public:
  explicit CannedServer(std::string answer) : answer_(std::move(answer)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(address);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), len), 0);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &len);
    port_ = ntohs(address.sin_port);
    EXPECT_EQ(listen(listen_fd_, 8), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~CannedServer() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }

 private:
  void Serve() {
    for (int i = 0; i < 16 && !stop_; ++i) {  // bounded
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::string in;
      char buffer[4096];
      // Bounded: stops at the end of the headers or of the stream.
      while (in.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = read(fd, buffer, sizeof(buffer));
        if (n <= 0) break;
        in.append(buffer, n);
      }
      EXPECT_EQ(write(fd, answer_.data(), answer_.size()),
                static_cast<ssize_t>(answer_.size()));
      close(fd);
    }
  }

  const std::string answer_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string Url(int port, const std::string& path = "/healthz") {
  return absl::StrCat("http://127.0.0.1:", port, path);
}

TEST(ProbeHttpTest, TwoAndThreeHundredsAreHealthyOthersNot) {
  {
    CannedServer ok("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    EXPECT_TRUE(ProbeHttp(Url(ok.port()), absl::Seconds(10)).ok());
  }
  {
    CannedServer redirect(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n"
        "Content-Length: 0\r\n\r\n");
    EXPECT_TRUE(ProbeHttp(Url(redirect.port()), absl::Seconds(10)).ok());
  }
  {
    CannedServer failing("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
    absl::Status probe = ProbeHttp(Url(failing.port()), absl::Seconds(10));
    EXPECT_EQ(probe.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(probe.message()), HasSubstr("HTTP 500"));
  }
  {
    CannedServer empty("");
    EXPECT_EQ(ProbeHttp(Url(empty.port()), absl::Seconds(10)).code(),
              absl::StatusCode::kUnavailable);
  }
}

// A TCP socket bound to 127.0.0.1 on a free port, listening with `backlog`
// when >= 0; it never accepts. Closed on destruction.
class LoopbackSocket {
 public:
  explicit LoopbackSocket(int backlog) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(address);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), len), 0);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &len);
    port_ = ntohs(address.sin_port);
    if (backlog >= 0) {
      EXPECT_EQ(listen(fd_, backlog), 0);
    }
  }
  ~LoopbackSocket() { close(fd_); }
  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(ProbeTcpTest, AnAcceptedConnectionIsHealthy) {
  LoopbackSocket listening(/*backlog=*/8);
  EXPECT_TRUE(ProbeTcp(listening.address(), absl::Seconds(10)).ok());
}

TEST(ProbeTcpTest, ARefusedConnectionIsUnavailableAndSaysWhy) {
  LoopbackSocket bound(/*backlog=*/-1);  // the port is taken, not listening
  const absl::Status probe = ProbeTcp(bound.address(), absl::Seconds(10));
  EXPECT_EQ(probe.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(probe.message(),
            absl::StrCat("tcp ", bound.address(), ": Connection refused"));
}

TEST(ProbeTcpTest, AConnectThatFailsAtOnceIsUnavailableAndSaysWhy) {
  // The kernel refuses TCP to a multicast address in connect() itself,
  // whatever the routes: no waiting for an answer.
  const absl::Status probe = ProbeTcp("224.0.0.1:80", absl::Seconds(10));
  EXPECT_EQ(probe.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(probe.message(), "tcp 224.0.0.1:80: Network is unreachable");
}

TEST(ProbeTcpTest, AConnectionNeverAcceptedTimesOutWithinTheTimeout) {
  // With the accept queue full, the kernel drops further SYNs: connecting
  // then hangs until the probe's own timeout.
  LoopbackSocket full(/*backlog=*/0);
  std::vector<int> fillers;
  for (int i = 0; i < 2; ++i) {
    fillers.push_back(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(full.port());
    connect(fillers.back(), reinterpret_cast<sockaddr*>(&address),
            sizeof(address));
  }
  const absl::Time start = absl::Now();
  const absl::Status probe = ProbeTcp(full.address(), absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(probe.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(probe.message(),
            absl::StrCat("tcp ", full.address(), ": Connection timed out"));
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(5));
  for (int fd : fillers) close(fd);
}

TEST(ProbeTcpTest, AnAddressThatIsNotHostColonPortIsInvalid) {
  for (const std::string bad :
       {"nohost", ":80", "host:", "host:0", "host:65536", "host:x"}) {
    const absl::Status probe = ProbeTcp(bad, absl::Seconds(1));
    EXPECT_EQ(probe.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(probe.message()), HasSubstr("want host:port"));
  }
}

TEST(HealthProbePauseTest, FastForTheFirstSecondThenBacksOffToInterval) {
  const absl::Duration interval = absl::Seconds(2);
  // Every 5 ms while a new container is expected to come up.
  for (absl::Duration since : {absl::ZeroDuration(), absl::Milliseconds(300),
                               absl::Milliseconds(999)}) {
    EXPECT_EQ(HealthProbePause(since, 0, interval), absl::Milliseconds(5));
  }
  // Then 10 ms doubling per late attempt, capped at the interval.
  EXPECT_EQ(HealthProbePause(absl::Seconds(1), 0, interval),
            absl::Milliseconds(10));
  EXPECT_EQ(HealthProbePause(absl::Seconds(1), 1, interval),
            absl::Milliseconds(20));
  EXPECT_EQ(HealthProbePause(absl::Seconds(2), 5, interval),
            absl::Milliseconds(320));
  EXPECT_EQ(HealthProbePause(absl::Seconds(9), 8, interval), interval);
  EXPECT_EQ(HealthProbePause(absl::Hours(1), 1000, interval), interval);
  // Never longer than a short interval.
  EXPECT_EQ(HealthProbePause(absl::ZeroDuration(), 0, absl::Milliseconds(2)),
            absl::Milliseconds(2));
}

}  // namespace
}  // namespace hoist::nodeagent
