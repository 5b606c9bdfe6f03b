// BufferedHttpServer against raw client sockets on 127.0.0.1: what its
// event path and blocking path must keep of httplib's behaviour (keep-alive,
// pipelining, "100 Continue", chunked and large bodies, large answers,
// addresses) and what they add (idle connections hold no thread, a whole-
// request read deadline, a connection limit, stop without waiting for idle
// keep-alive connections).
#include "receiver/buffered_http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

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

// Threads of this process.
int ThreadCount() {
  int n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

// Polls `done` every 10 ms for at most 10 s.
bool WaitUntil(const std::function<bool()>& done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// A BufferedHttpServer with `options` on 127.0.0.1, routes added by `setup`,
// listening until destroyed.
class RunningServer {
 public:
  RunningServer(BufferedHttpServer::Options options,
                const std::function<void(BufferedHttpServer&)>& setup)
      : server_(options) {
    server_.set_keep_alive_timeout(60);
    setup(server_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    listener_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~RunningServer() {
    server_.stop();
    server_.CloseConnections();
    listener_.join();
  }
  BufferedHttpServer& server() { return server_; }
  int port() const { return port_; }

 private:
  BufferedHttpServer server_;
  int port_ = 0;
  std::thread listener_;
};

class BufferedHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.set_keep_alive_timeout(60);  // longer than any test waits
    server_.set_keep_alive_max_count(100);
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

// More pipelined requests than one turn answers: the connection yields
// its thread and comes back for the rest, in order.
TEST_F(BufferedHttpServerTest, AnswersManyPipelinedRequestsInOrder) {
  constexpr int kRequests = 40;
  std::string burst;
  for (int i = 0; i < kRequests; ++i) {
    absl::StrAppend(&burst, "GET /echo?q=", i, " HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  const int fd = Connect();
  Send(fd, burst);
  std::string pending;
  for (int i = 0; i < kRequests; ++i) {
    const std::string answer = ReadAnswer(fd, &pending);
    ASSERT_TRUE(absl::StrContains(answer, absl::StrCat("q=", i, " ")))
        << i << ": " << answer;
  }
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

// A request whose bytes come in several writes is answered once whole.
TEST_F(BufferedHttpServerTest, AnswersARequestThatArrivesInPieces) {
  const int fd = Connect();
  std::string pending;
  const std::string request =
      "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
  for (size_t at = 0; at < request.size(); at += 7) {
    Send(fd, request.substr(at, 7));
    // Shapes the client's pace (several segments), not a wait for a result.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::string answer = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(answer, "got hello world")) << answer;
  close(fd);
}

// Chunked bodies and bodies over kMaxEventBodyBytes take the blocking path;
// the connection then comes back and serves its next request.
TEST_F(BufferedHttpServerTest, ReadsChunkedAndLargeBodiesThenGoesOn) {
  const int fd = Connect();
  std::string pending;
  Send(fd,
       "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  const std::string chunked = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(chunked, "got hello world")) << chunked;

  const std::string big(BufferedHttpServer::kMaxEventBodyBytes + 1000, 'b');
  Send(fd, absl::StrCat("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: ",
                        big.size(), "\r\n\r\n", big,
                        "GET /echo?q=after HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string large = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(large, absl::StrCat("got ", big)))
      << large.substr(0, 200);
  const std::string after = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(after, "q=after")) << after;
  close(fd);
}

// Idle keep-alive connections hold no thread, so many of them neither grow
// the thread count nor delay a request on a new connection.
TEST_F(BufferedHttpServerTest, IdleConnectionsHoldNoThread) {
  constexpr int kIdle = 200;
  const int threads_before = ThreadCount();
  std::vector<int> idle;
  for (int i = 0; i < kIdle; ++i) {
    const int fd = Connect();
    std::string pending;
    Send(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_FALSE(ReadAnswer(fd, &pending).empty());
    idle.push_back(fd);
  }
  EXPECT_TRUE(WaitUntil([&] { return server_.open_connections() == kIdle; }))
      << server_.open_connections();
  EXPECT_LT(ThreadCount() - threads_before, 10)
      << "threads grew with idle connections";
  const int fd = Connect();
  std::string pending;
  const auto start = std::chrono::steady_clock::now();
  Send(fd, "GET /echo?q=new HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string answer = ReadAnswer(fd, &pending);
  EXPECT_TRUE(absl::StrContains(answer, "q=new")) << answer;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  close(fd);
  for (int idle_fd : idle) close(idle_fd);
}

// The read timeout bounds a whole request, not each read: a client sending
// a byte every 100 ms (each within a 1 s timeout) is dropped after about 1 s.
TEST(BufferedHttpServerTimeoutTest, DropsARequestTrickledPastTheReadTimeout) {
  RunningServer running({}, [](BufferedHttpServer& server) {
    server.set_read_timeout(1, 0);
    server.Post("/body", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
  });
  const int fd = ConnectTo(running.port());
  const std::string request =
      "POST /body HTTP/1.1\r\nHost: x\r\nX-Padding: "
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "\r\nContent-Length: 2\r\n\r\nok";
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (size_t i = 0; i < request.size() && !closed; ++i) {
    if (send(fd, &request[i], 1, MSG_NOSIGNAL) != 1) {
      closed = true;
      break;
    }
    // Paces the trickle and watches for the server's close meanwhile.
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) == 1) {
      char c;
      closed = recv(fd, &c, 1, 0) <= 0;
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(closed) << "the trickled request was never dropped";
  EXPECT_GE(elapsed, std::chrono::milliseconds(900)) << "dropped too early";
  close(fd);
}

// A handler that blocks holds one event thread; the others serve on.
TEST(BufferedHttpServerThreadsTest, ASlowHandlerDoesNotHoldOtherConnections) {
  absl::Notification entered;
  absl::Notification release;
  BufferedHttpServer::Options options;
  options.event_threads = 2;
  RunningServer running(options, [&](BufferedHttpServer& server) {
    server.Get("/hold", [&](const httplib::Request&, httplib::Response& res) {
      entered.Notify();
      release.WaitForNotificationWithTimeout(absl::Seconds(30));
      res.set_content("held", "text/plain");
    });
    server.Get("/quick", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("quick", "text/plain");
    });
  });
  const int held = ConnectTo(running.port());
  Send(held, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const int other = ConnectTo(running.port());
  std::string pending;
  Send(other, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string quick = ReadAnswer(other, &pending);
  EXPECT_TRUE(absl::StrContains(quick, "quick")) << quick;
  EXPECT_FALSE(release.HasBeenNotified());
  release.Notify();
  std::string held_pending;
  EXPECT_TRUE(absl::StrContains(ReadAnswer(held, &held_pending), "held"));
  close(other);
  close(held);
}

// Past max_connections a new connection is closed at once; once one closes,
// new ones are served again.
TEST(BufferedHttpServerLimitTest, ClosesConnectionsBeyondTheLimit) {
  BufferedHttpServer::Options options;
  options.max_connections = 2;
  RunningServer running(options, [](BufferedHttpServer& server) {
    server.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
  });
  const int a = ConnectTo(running.port());
  const int b = ConnectTo(running.port());
  ASSERT_TRUE(
      WaitUntil([&] { return running.server().open_connections() == 2; }));
  const int refused = ConnectTo(running.port());
  EXPECT_TRUE(ClosedByServer(refused));
  close(refused);
  close(a);
  ASSERT_TRUE(
      WaitUntil([&] { return running.server().open_connections() == 1; }));
  const int c = ConnectTo(running.port());
  std::string pending;
  Send(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(ReadAnswer(c, &pending), "HTTP/1.1 200 OK"));
  close(c);
  close(b);
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
