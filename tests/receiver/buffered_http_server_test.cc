// BufferedHttpServer against raw client sockets on 127.0.0.1: what its own
// connection loop and buffered stream must keep of httplib's behaviour
// (keep-alive, pipelining, "100 Continue", large answers, addresses) and
// what it adds (one send per answer, stop without waiting for idle
// keep-alive connections).
#include "receiver/buffered_http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace hoist::receiver {
namespace {

// Waits for every socket read below; a hang fails the test instead.
constexpr int kReadTimeoutMs = 10000;

// A connected client socket to 127.0.0.1:`port` (closed by the caller).
int ConnectTo(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void Send(int fd, const std::string& data) {
  ASSERT_EQ(send(fd, data.data(), data.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(data.size()));
}

// Reads one whole HTTP answer (headers plus
// Content-Length bytes), which is removed from *pending and returned.
// Empty when the connection closed or nothing came within the timeout.
std::string ReadAnswer(int fd, std::string* pending) {
  while (true) {
    const size_t head_end = pending->find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const std::string head = pending->substr(0, head_end);
      size_t length = 0;
      const size_t at = head.find("Content-Length: ");
      if (at != std::string::npos) {
        const size_t eol = head.find("\r\n", at);
        EXPECT_TRUE(absl::SimpleAtoi(
            head.substr(at + 16, eol == std::string::npos ? std::string::npos
                                                          : eol - at - 16),
            &length));
      }
      const size_t total = head_end + 4 + length;
      if (pending->size() >= total) {
        std::string answer = pending->substr(0, total);
        pending->erase(0, total);
        return answer;
      }
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, kReadTimeoutMs) <= 0) return "";
    char buf[65536];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return "";
    pending->append(buf, static_cast<size_t>(n));
  }
}

// True when the server closed the connection (EOF) within the timeout.
bool ClosedByServer(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, kReadTimeoutMs) <= 0) return false;
  char c;
  return recv(fd, &c, 1, 0) == 0;
}

class BufferedHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.set_keep_alive_timeout(60);  // longer than any test waits
    server_.Get(
        "/echo", [](const httplib::Request& req, httplib::Response& res) {
          res.set_content(
              absl::StrCat("path=", req.path, " q=", req.get_param_value("q"),
                           " remote=", req.remote_addr, ":", req.remote_port),
              "text/plain");
        });
    server_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(1 << 20, 'x'), "text/plain");
    });
    server_.Post(
        "/body", [](const httplib::Request& req, httplib::Response& res) {
          res.set_content(absl::StrCat("got ", req.body), "text/plain");
        });
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    listener_ = std::thread([this] { server_.listen_after_bind(); });
  }

  void TearDown() override { StopServer(); }

  void StopServer() {
    if (!listener_.joinable()) return;
    server_.stop();
    server_.CloseConnections();
    listener_.join();
  }

  int Connect() { return ConnectTo(port_); }

  BufferedHttpServer server_;
  int port_ = 0;
  std::thread listener_;
};

TEST_F(BufferedHttpServerTest,
       AnswersKeepAliveRequestsInOrderIncludingPipelined) {
  const int fd = Connect();
  std::string pending;
  Send(fd, "GET /echo?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string first = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StartsWith(first, "HTTP/1.1 200 OK")) << first;
  EXPECT_TRUE(absl::StrContains(first, "path=/echo q=1")) << first;
  // Two requests in one write: the second stays buffered for the next turn.
  Send(fd,
       "GET /echo?q=2 HTTP/1.1\r\nHost: x\r\n\r\n"
       "GET /echo?q=3 HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string second = ReadAnswer(fd, &pending);
  const std::string third = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(second, "q=2")) << second;
  EXPECT_TRUE(absl::StrContains(third, "q=3")) << third;
  close(fd);
}

TEST_F(BufferedHttpServerTest, ReportsThePeerAddressAndPort) {
  const int fd = Connect();
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len), 0);
  std::string pending;
  Send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string answer = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(
      answer, absl::StrCat("remote=127.0.0.1:", ntohs(local.sin_port))))
      << answer;
  close(fd);
}

// The client sends its body only after "100 Continue": the interim answer
// must leave the output buffer before the server waits for the body.
TEST_F(BufferedHttpServerTest, SendsContinueBeforeWaitingForTheBody) {
  const int fd = Connect();
  std::string pending;
  Send(fd,
       "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
       "Expect: 100-continue\r\n\r\n");
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, kReadTimeoutMs), 1) << "no 100 Continue";
  char buf[256];
  const ssize_t n = recv(fd, buf, sizeof(buf), 0);
  ASSERT_GT(n, 0);
  const std::string interim(buf, static_cast<size_t>(n));
  EXPECT_TRUE(absl::StartsWith(interim, "HTTP/1.1 100 Continue")) << interim;
  pending = interim.substr(interim.find("\r\n\r\n") + 4);
  Send(fd, "hello");
  const std::string answer = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(answer, "got hello")) << answer;
  close(fd);
}

TEST_F(BufferedHttpServerTest, SendsAnAnswerLargerThanItsBufferWhole) {
  const int fd = Connect();
  std::string pending;
  Send(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string answer = ReadAnswer(fd, &pending);
  ASSERT_FALSE(answer.empty());
  EXPECT_EQ(answer.size() - (answer.find("\r\n\r\n") + 4), size_t{1} << 20);
  close(fd);
}

TEST(BufferedHttpServerKeepAliveTest, ClosesAfterTheKeepAliveCount) {
  BufferedHttpServer server;
  server.set_keep_alive_max_count(2);
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread listener([&] { server.listen_after_bind(); });
  const int fd = ConnectTo(port);
  std::string pending;
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  Send(fd, request);
  const std::string first = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StartsWith(first, "HTTP/1.1 200 OK")) << first;
  EXPECT_FALSE(absl::StrContains(first, "Connection: close")) << first;
  Send(fd, request);
  const std::string second = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(second, "Connection: close")) << second;
  EXPECT_TRUE(ClosedByServer(fd));
  close(fd);
  server.stop();
  server.CloseConnections();
  listener.join();
}

// An idle keep-alive connection (60 s timeout here) does not hold up the
// server's stop: CloseConnections() wakes it and the client sees EOF.
TEST_F(BufferedHttpServerTest, StopDoesNotWaitForIdleKeepAliveConnections) {
  const int fd = Connect();
  std::string pending;
  Send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_FALSE(ReadAnswer(fd, &pending).empty());
  auto stopped = std::async(std::launch::async, [this] { StopServer(); });
  EXPECT_EQ(stopped.wait_for(std::chrono::seconds(20)),
            std::future_status::ready)
      << "stop waited for the idle connection";
  EXPECT_TRUE(ClosedByServer(fd));
  stopped.wait();
  close(fd);
}

}  // namespace
}  // namespace hoist::receiver
