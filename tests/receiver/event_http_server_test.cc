// The webhook port's event-driven server (receiver/event_http_server.h)
// over real loopback sockets, plain and HTTPS: incremental framing, chunked
// bodies, "Expect: 100-continue", answers before the body, deadlines,
// connection caps, the cap on unauthenticated body bytes, lingering close,
// TLS settings; plus the framing pieces (receiver/http_framing.h) on their
// own and the webhook section's config keys. docs/design.md, "Webhook
// connections", is the contract.
#include "receiver/event_http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/config.h"
#include "receiver/http_framing.h"
#include "receiver/webhook_server.h"

namespace hoist::receiver {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

constexpr char kPath[] = "/webhooks/artifactory";
constexpr char kSecret[] = "event-server-secret";

std::string Event(int n = 0) {
  std::string sha = absl::StrCat(n);
  sha = std::string(64 - sha.size(), 'a') + sha;
  return absl::StrCat(
      R"({"domain":"docker","event_type":"promoted","data":{"image_name":)",
      R"("helloworld","name":"manifest.json","path":)",
      R"("helloworld/latest/manifest.json","repo_key":"staging","sha256":")",
      sha, R"(","size":949,"tag":"latest"}})");
}

// ---- clients ----------------------------------------------------------------

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

// A connection from `source` (any 127.0.0.0/8 address is on lo).
int ConnectFrom(const char* source, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, source, &local.sin_addr);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, absl::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n =
        send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// What a read until `until` returns true, EOF, an error or `timeout` gave.
struct Received {
  std::string data;
  bool eof = false;    // the server closed (orderly) or reset
  bool reset = false;  // it reset the connection (no orderly close)
};

Received ReadUntil(int fd, absl::Duration timeout,
                   const std::function<bool(const std::string&)>& until) {
  Received got;
  const absl::Time deadline = absl::Now() + timeout;
  while (!until(got.data)) {
    const int wait_ms =
        static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd p{fd, POLLIN, 0};
    if (wait_ms <= 0 || poll(&p, 1, wait_ms) <= 0) break;
    char buf[16384];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      got.eof = true;
      got.reset = n < 0 && errno == ECONNRESET;
      break;
    }
    got.data.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Bytes of the first complete answer (head and Content-Length body) in
// `data`, or 0.
size_t AnswerLength(const std::string& data) {
  const size_t end = data.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  const size_t cl = data.find("Content-Length: ");
  if (cl == std::string::npos || cl > end) return end + 4;
  const size_t length = std::stoul(data.substr(cl + 16));
  return data.size() >= end + 4 + length ? end + 4 + length : 0;
}

// Reads one answer (or up to EOF / 10 s).
std::string ReadAnswer(int fd) {
  return ReadUntil(fd, absl::Seconds(10),
                   [](const std::string& d) { return AnswerLength(d) > 0; })
      .data;
}

// Reads until EOF; `eof` false when the server kept the connection open for
// `timeout`.
Received ReadToEof(int fd, absl::Duration timeout = absl::Seconds(10)) {
  return ReadUntil(fd, timeout, [](const std::string&) { return false; });
}

int StatusOf(absl::string_view answer) {
  if (answer.size() < 12 || !absl::StartsWith(answer, "HTTP/1.")) return -1;
  return std::atoi(std::string(answer.substr(9, 3)).c_str());
}

int CountOf(absl::string_view haystack, absl::string_view needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != absl::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

std::string Post(const std::string& body, const std::string& auth,
                 const std::string& extra = "") {
  return absl::StrCat("POST ", kPath,
                      " HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/json\r\n"
                      "X-JFrog-Event-Auth: ",
                      auth, "\r\n", extra, "Content-Length: ", body.size(),
                      "\r\n\r\n", body);
}

// Polls `condition` (server state with no notification) until true or 10 s.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

// ---- the webhook server -----------------------------------------------------

class RecordingSubmitter : public RolloutSubmitter {
 public:
  absl::StatusOr<SubmitResult> Submit(const DeployIntent& intent) override {
    absl::MutexLock lock(&mu_);
    digests_.push_back(intent.digest);
    SubmitResult result;
    result.kind = SubmitResult::Kind::kAccepted;
    result.rollout_id = absl::StrCat("r", digests_.size());
    result.service = intent.service;
    return result;
  }
  size_t submitted() const {
    absl::MutexLock lock(&mu_);
    return digests_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> digests_ ABSL_GUARDED_BY(mu_);
};

std::shared_ptr<ReceiverConfig> Config(WebhookAuth auth = WebhookAuth::kToken) {
  auto config = std::make_shared<ReceiverConfig>();
  config->webhook.listen = "127.0.0.1:0";
  config->webhook.path = kPath;
  config->webhook.secrets = {kSecret};
  config->webhook.auth = auth;
  config->webhook.max_body_bytes = 4096;
  ServiceConfig service;
  service.name = "hello";
  service.image = "registry.example.com/prod/helloworld";
  service.trigger.repo_key = "staging";
  service.trigger.image = "helloworld";
  service.trigger.tags = {"latest"};
  config->services = {service};
  return config;
}

class WebhookPortTest : public ::testing::Test {
 protected:
  void Start(std::shared_ptr<ReceiverConfig> config,
             RolloutSubmitter* submitter = nullptr, int event_threads = 2,
             int submit_threads = 4) {
    WebhookServer::Options options;
    options.config = std::move(config);
    options.submitter = submitter != nullptr ? submitter : &submitter_;
    options.metrics = &metrics_;
    options.event_threads = event_threads;
    options.submit_threads = submit_threads;
    absl::StatusOr<std::unique_ptr<WebhookServer>> server =
        WebhookServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  int port() const { return server_->port(); }
  std::string Metrics() const { return metrics_.Render(); }

  RecordingSubmitter submitter_;
  MetricsRegistry metrics_;
  std::unique_ptr<WebhookServer> server_;
};

TEST_F(WebhookPortTest, ARequestSentOneByteAtATimeIsAnswered) {
  Start(Config());
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  const std::string request = Post(Event(), kSecret);
  for (char c : request) ASSERT_TRUE(SendAll(fd, std::string(1, c)));
  const std::string answer = ReadAnswer(fd);
  EXPECT_EQ(StatusOf(answer), 202) << answer;
  EXPECT_EQ(submitter_.submitted(), 1u);
  close(fd);
}

TEST_F(WebhookPortTest, PipelinedRequestsAreAnsweredInOrderOnOneConnection) {
  Start(Config());
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(
      fd, absl::StrCat(Post(Event(1), kSecret), Post(Event(2), "forged"),
                       "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                       Post(Event(3), kSecret))));
  const Received got =
      ReadUntil(fd, absl::Seconds(10), [](const std::string& d) {
        return CountOf(d, "HTTP/1.1 ") >= 4 && AnswerLength(d) > 0 &&
               absl::EndsWith(d, "}");
      });
  EXPECT_FALSE(got.eof);
  std::vector<int> codes;
  for (size_t at = got.data.find("HTTP/1.1 "); at != std::string::npos;
       at = got.data.find("HTTP/1.1 ", at + 1)) {
    codes.push_back(StatusOf(got.data.substr(at)));
  }
  EXPECT_THAT(codes, ::testing::ElementsAre(202, 401, 200, 202)) << got.data;
  EXPECT_THAT(got.data, HasSubstr("\"rollout_id\":\"r2\""));
  close(fd);
}

TEST_F(WebhookPortTest, Http10KeepAliveIsHonoured) {
  Start(Config());
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  const std::string get =
      "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  ASSERT_TRUE(SendAll(fd, get));
  const std::string first = ReadAnswer(fd);
  EXPECT_EQ(StatusOf(first), 200);
  EXPECT_THAT(first, HasSubstr("Connection: keep-alive\r\n"));
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.0\r\n\r\n"));
  const Received second = ReadToEof(fd);
  EXPECT_EQ(StatusOf(second.data), 200);
  EXPECT_THAT(second.data, HasSubstr("Connection: close\r\n"));
  EXPECT_TRUE(second.eof);
  close(fd);
}

TEST_F(WebhookPortTest, ChunkedBodyIsDecodedInTheLoop) {
  Start(Config(WebhookAuth::kHmacSha256));
  const std::string body = Event();
  std::string chunked;
  for (size_t at = 0; at < body.size(); at += 50) {
    const std::string part = body.substr(at, 50);
    absl::StrAppend(&chunked, absl::Hex(part.size()),
                    at == 0 ? ";name=value" : "", "\r\n", part, "\r\n");
  }
  absl::StrAppend(&chunked, "0\r\nX-Trailer: yes\r\n\r\n");
  const std::string request =
      absl::StrCat("POST ", kPath,
                   " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\nX-JFrog-Event-Auth: ",
                   HmacSha256Hex(kSecret, body), "\r\n\r\n", chunked);
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  // Split in odd places: the decoder keeps its state across reads.
  for (size_t at = 0; at < request.size(); at += 7) {
    ASSERT_TRUE(SendAll(fd, request.substr(at, 7)));
  }
  const std::string answer = ReadAnswer(fd);
  EXPECT_EQ(StatusOf(answer), 202) << answer;
  EXPECT_EQ(submitter_.submitted(), 1u);
  // The connection carries the next request.
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(StatusOf(ReadAnswer(fd)), 200);
  close(fd);
}

TEST_F(WebhookPortTest, ExpectContinueGets100ThenTheAnswer) {
  Start(Config());
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  const std::string body = Event();
  ASSERT_TRUE(SendAll(
      fd,
      absl::StrCat("POST ", kPath,
                   " HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   "application/json\r\nExpect: 100-continue\r\n"
                   "X-JFrog-Event-Auth: ",
                   kSecret, "\r\nContent-Length: ", body.size(), "\r\n\r\n")));
  const Received interim = ReadUntil(
      fd, absl::Seconds(10),
      [](const std::string& d) { return absl::StrContains(d, "\r\n\r\n"); });
  EXPECT_EQ(interim.data, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(SendAll(fd, body));
  const std::string answer = ReadAnswer(fd);
  EXPECT_EQ(StatusOf(answer), 202) << answer;
  close(fd);

  // Headers that fail a pre-body check get their answer, not a 100.
  const int wrong = Connect(port());
  ASSERT_TRUE(SendAll(
      wrong, absl::StrCat("POST ", kPath,
                          " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                          "X-JFrog-Event-Auth: nope\r\nContent-Length: 10\r\n"
                          "\r\n")));
  const Received refused = ReadToEof(wrong);
  EXPECT_EQ(StatusOf(refused.data), 401) << refused.data;
  EXPECT_THAT(refused.data, Not(HasSubstr("100 Continue")));
  close(wrong);
}

TEST_F(WebhookPortTest, TokenModeAnswers401BeforeReadingTheBody) {
  auto config = Config();
  config->webhook.max_body_bytes = 2 << 20;
  Start(config);
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  // A 1 MB body is announced and never sent.
  ASSERT_TRUE(SendAll(
      fd, absl::StrCat("POST ", kPath,
                       " HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       "application/json\r\nX-JFrog-Event-Auth: wrong\r\n"
                       "Content-Length: 1000000\r\n\r\n")));
  const Received got = ReadToEof(fd, absl::Seconds(5));
  EXPECT_EQ(StatusOf(got.data), 401) << got.data;
  EXPECT_THAT(got.data, HasSubstr("Connection: close\r\n"));
  EXPECT_THAT(got.data, HasSubstr("wrong X-JFrog-Event-Auth token"));
  EXPECT_TRUE(got.eof);
  EXPECT_EQ(submitter_.submitted(), 0u);
  close(fd);
}

TEST_F(WebhookPortTest, A413WithUnreadBodyIsReadThenEndOfStream) {
  Start(Config());
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  // The rest of the "body" looks like requests: it must not be served.
  std::string junk;
  while (junk.size() < 200 * 1024) {
    absl::StrAppend(&junk, "GET /", std::string(9000, 'x'),
                    " HTTP/1.1\r\n\r\n");
  }
  // Head and body in one write: unread body bytes are waiting when the
  // server answers.
  const std::string head =
      absl::StrCat("POST ", kPath,
                   " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "X-JFrog-Event-Auth: ",
                   kSecret, "\r\nContent-Length: 10000000\r\n\r\n");
  auto sender = std::async(std::launch::async, [&] {
    if (SendAll(fd, head + junk)) SendAll(fd, junk);
  });
  const Received got = ReadToEof(fd);
  sender.wait();
  EXPECT_EQ(StatusOf(got.data), 413) << got.data.substr(0, 200);
  EXPECT_THAT(got.data, HasSubstr("Connection: close\r\n"));
  EXPECT_EQ(CountOf(got.data, "HTTP/1.1 "), 1) << "answered the unread body";
  EXPECT_TRUE(got.eof);
  // An orderly end: the server shut its side and drained ours (a close with
  // unread input would reset the connection, and may destroy the answer).
  EXPECT_FALSE(got.reset);
  close(fd);
}

TEST_F(WebhookPortTest, MetricsAreNotServedOnTheWebhookPort) {
  Start(Config());
  const int fd = Connect(port());
  ASSERT_TRUE(SendAll(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string answer = ReadAnswer(fd);
  EXPECT_EQ(StatusOf(answer), 404) << answer;
  EXPECT_THAT(answer, Not(HasSubstr("hoist_")));
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string health = ReadAnswer(fd);
  EXPECT_EQ(StatusOf(health), 200);
  EXPECT_TRUE(absl::EndsWith(health, "\r\n\r\nok\n")) << health;
  close(fd);
}

TEST_F(WebhookPortTest, ARequestTrickledPastTheRequestTimeoutIs408AndClosed) {
  auto config = Config();
  config->webhook.request_timeout_seconds = 1;
  Start(config);
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  // One byte every 100 ms: never idle, never complete.
  const std::string request = Post(Event(), kSecret);
  const auto start = Clock::now();
  Received got;
  for (size_t i = 0; i < request.size() && !got.eof; ++i) {
    if (!SendAll(fd, request.substr(i, 1))) break;
    got = ReadUntil(fd, absl::Milliseconds(100),
                    [](const std::string& d) { return !d.empty(); });
    if (!got.data.empty()) break;
  }
  if (!got.eof) {
    const Received rest = ReadToEof(fd);
    got.data += rest.data;
    got.eof = rest.eof;
  }
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(StatusOf(got.data), 408) << got.data;
  EXPECT_GE(elapsed, std::chrono::milliseconds(900));
  EXPECT_LT(elapsed, std::chrono::seconds(4));
  EXPECT_TRUE(ReadToEof(fd).eof);
  EXPECT_THAT(Metrics(),
              HasSubstr("hoist_webhook_timeouts_total{kind=\"request\"} 1"));
  close(fd);
}

TEST_F(WebhookPortTest, IdleConnectionsAreClosedAfterTheIdleTimeout) {
  auto config = Config();
  config->webhook.idle_timeout_seconds = 1;
  Start(config);
  // Before any request.
  const int silent = Connect(port());
  // Between keep-alive requests.
  const int used = Connect(port());
  ASSERT_TRUE(SendAll(used, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(StatusOf(ReadAnswer(used)), 200);
  const auto start = Clock::now();
  for (int fd : {silent, used}) {
    const Received got = ReadToEof(fd, absl::Seconds(5));
    EXPECT_TRUE(got.eof);
    EXPECT_TRUE(got.data.empty()) << got.data;
    close(fd);
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4));
  EXPECT_THAT(Metrics(),
              HasSubstr("hoist_webhook_timeouts_total{kind=\"idle\"} 2"));
}

TEST_F(WebhookPortTest, PerAddressCapClosesTheFifthConnectionAtOnce) {
  auto config = Config();
  config->webhook.max_connections_per_ip = 4;
  Start(config);
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(Connect(port()));
    // Answered: accepted and counted.
    ASSERT_TRUE(
        SendAll(held.back(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_EQ(StatusOf(ReadAnswer(held.back())), 200);
  }
  const int fifth = Connect(port());
  ASSERT_GE(fifth, 0);
  const Received refused = ReadToEof(fifth, absl::Seconds(5));
  EXPECT_TRUE(refused.eof);
  EXPECT_TRUE(refused.data.empty());
  close(fifth);
  for (int fd : held) {
    ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_EQ(StatusOf(ReadAnswer(fd)), 200) << "a held connection was cut";
  }
  EXPECT_THAT(Metrics(),
              HasSubstr("hoist_webhook_connections_refused_total{reason="
                        "\"ip_cap\"} 1"));
  EXPECT_THAT(Metrics(), HasSubstr("hoist_webhook_connections 4"));
  // A place freed is taken again.
  close(held.back());
  held.pop_back();
  EXPECT_TRUE(Eventually([&] {
    const int again = Connect(port());
    SendAll(again, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const bool served = StatusOf(ReadAnswer(again)) == 200;
    close(again);
    return served;
  }));
  for (int fd : held) close(fd);
}

TEST_F(WebhookPortTest, TotalCapClosesConnectionsBeyondIt) {
  auto config = Config();
  config->webhook.max_connections = 3;
  config->webhook.max_connections_per_ip = 0;
  Start(config);
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(Connect(port()));
    ASSERT_TRUE(
        SendAll(held.back(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_EQ(StatusOf(ReadAnswer(held.back())), 200);
  }
  const int fourth = Connect(port());
  const Received refused = ReadToEof(fourth, absl::Seconds(5));
  EXPECT_TRUE(refused.eof);
  EXPECT_TRUE(refused.data.empty());
  close(fourth);
  EXPECT_THAT(Metrics(),
              HasSubstr("hoist_webhook_connections_refused_total{reason="
                        "\"total_cap\"} 1"));
  for (int fd : held) close(fd);
}

// Holds every Submit until released: a journal commit that takes long.
class HeldSubmitter : public RolloutSubmitter {
 public:
  absl::StatusOr<SubmitResult> Submit(const DeployIntent&) override {
    entered.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(30));
    SubmitResult result;
    result.kind = SubmitResult::Kind::kAccepted;
    result.rollout_id = "r-held";
    return result;
  }
  absl::Notification entered;
  absl::Notification release;
};

TEST_F(WebhookPortTest, ASlowJournalCommitDoesNotHoldTheEventLoop) {
  HeldSubmitter held;
  Start(Config(), &held, /*event_threads=*/1, /*submit_threads=*/1);
  const int parked = Connect(port());
  ASSERT_TRUE(SendAll(parked, Post(Event(), kSecret)));
  ASSERT_TRUE(held.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // The only event thread still answers everyone else.
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) {
    const int other = Connect(port());
    ASSERT_TRUE(SendAll(
        other, i % 2 == 0 ? Post(Event(i), "forged")
                          : "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_EQ(StatusOf(ReadAnswer(other)), i % 2 == 0 ? 401 : 200);
    close(other);
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  held.release.Notify();
  const std::string answer = ReadAnswer(parked);
  EXPECT_EQ(StatusOf(answer), 202) << answer;
  EXPECT_THAT(answer, HasSubstr("r-held"));
  close(parked);
}

TEST_F(WebhookPortTest, AClientLeavingWhileItsRequestWaitsLeavesNoTrace) {
  HeldSubmitter held;
  Start(Config(), &held, /*event_threads=*/1, /*submit_threads=*/1);
  const int leaving = Connect(port());
  ASSERT_TRUE(SendAll(leaving, Post(Event(), kSecret)));
  ASSERT_TRUE(held.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // Reset (not a FIN): the server sees an error on the parked connection.
  linger reset{1, 0};
  setsockopt(leaving, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  close(leaving);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(Metrics(), "hoist_webhook_connections 0\n");
  }));
  // Its answer, when the journal is done, goes nowhere; the server goes on.
  held.release.Notify();
  const int next = Connect(port());
  ASSERT_TRUE(SendAll(next, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(StatusOf(ReadAnswer(next)), 200);
  close(next);
  server_->Stop();
}

TEST_F(WebhookPortTest, MalformedAndOversizedHeadsAreRefusedAndClosed) {
  Start(Config());
  const std::vector<std::pair<std::string, int>> cases = {
      {"GARBAGE\r\n\r\n", 400},
      {absl::StrCat("POST ", kPath, " HTTP/9.9\r\nHost: x\r\n\r\n"), 505},
      {absl::StrCat("POST ", kPath, " HTTP/1.1\r\nNoColon\r\n\r\n"), 400},
      {absl::StrCat("POST ", kPath, " HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
       400},
      {absl::StrCat("POST ", kPath,
                    " HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: "
                    "chunked\r\n\r\n"),
       400},
      {absl::StrCat("POST ", kPath,
                    " HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
       501},
      {absl::StrCat("GET /", std::string(9000, 'p'), " HTTP/1.1\r\n\r\n"), 414},
      {absl::StrCat("POST ", kPath, " HTTP/1.1\r\nX-Big: ",
                    std::string(70000, 'A'), "\r\n\r\n"),
       431},
  };
  for (const auto& [request, status] : cases) {
    const int fd = Connect(port());
    ASSERT_TRUE(SendAll(fd, request));
    const Received got = ReadToEof(fd);
    EXPECT_EQ(StatusOf(got.data), status) << request.substr(0, 60);
    EXPECT_THAT(got.data, HasSubstr("{\"error\":"));
    EXPECT_TRUE(got.eof);
    close(fd);
  }
}

// ---- EventHttpServer with a test handler -----------------------------------

// Echoes bodies; answers "/later" requests from another thread when the
// test says so; "/big" with `big_answer_bytes` bytes.
class EchoHandler : public HttpHandler {
 public:
  HeadVerdict OnHead(const RequestHead&) override {
    return {std::nullopt, 1 << 20};
  }
  void OnRequest(const RequestHead& head, absl::string_view body,
                 HttpResponder respond) override {
    HttpAnswer answer;
    answer.content_type = "text/plain";
    if (head.path == "/big") {
      answer.body.assign(big_answer_bytes, 'b');
    } else {
      answer.body = std::string(body);
    }
    if (head.path == "/later") {
      absl::MutexLock lock(&mu_);
      waiting_.emplace_back(respond, std::move(answer));
      return;
    }
    respond.Respond(std::move(answer));
  }
  // Answers every waiting request from this thread.
  void AnswerWaiting() {
    std::vector<std::pair<HttpResponder, HttpAnswer>> waiting;
    {
      absl::MutexLock lock(&mu_);
      waiting.swap(waiting_);
    }
    for (auto& [respond, answer] : waiting) respond.Respond(answer);
  }
  size_t big_answer_bytes = 0;

 private:
  absl::Mutex mu_;
  std::vector<std::pair<HttpResponder, HttpAnswer>> waiting_
      ABSL_GUARDED_BY(mu_);
};

class EventHttpServerTest : public ::testing::Test {
 protected:
  void Start(EventHttpServer::Options options) {
    options.handler = &handler_;
    options.metrics = &metrics_;
    absl::StatusOr<std::unique_ptr<EventHttpServer>> server =
        EventHttpServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override {
    handler_.AnswerWaiting();
    if (server_ != nullptr) server_->Stop();
  }

  EchoHandler handler_;
  MetricsRegistry metrics_;
  std::unique_ptr<EventHttpServer> server_;
};

std::string EchoPost(const std::string& path, size_t length,
                     const std::string& body = "") {
  return absl::StrCat("POST ", path,
                      " HTTP/1.1\r\nHost: x\r\nContent-Length: ", length,
                      "\r\n\r\n", body);
}

TEST_F(EventHttpServerTest, BodiesHeldBeforeTheHandlerAreCappedInTotal) {
  EventHttpServer::Options options;
  options.max_unauthenticated_bytes = 8192;
  Start(options);
  // 5000 of 6000 bytes held.
  const int a = Connect(server_->port());
  ASSERT_TRUE(SendAll(a, EchoPost("/", 6000, std::string(5000, 'a'))));
  ASSERT_TRUE(Eventually([&] { return server_->held_body_bytes() == 5000; }));
  // Another 6000 would pass 8192: refused at once, before its body.
  const int b = Connect(server_->port());
  ASSERT_TRUE(SendAll(b, EchoPost("/", 6000)));
  const Received refused = ReadToEof(b);
  EXPECT_EQ(StatusOf(refused.data), 503) << refused.data;
  EXPECT_THAT(refused.data, HasSubstr("{\"error\":\"busy\"}"));
  EXPECT_THAT(refused.data, HasSubstr("Connection: close\r\n"));
  EXPECT_TRUE(refused.eof);
  close(b);
  // A chunked body growing past the cap: 503 as its bytes arrive.
  const int c = Connect(server_->port());
  ASSERT_TRUE(SendAll(c,
                      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                      "chunked\r\n\r\n"));
  const std::string chunk =
      absl::StrCat("400\r\n", std::string(1024, 'c'), "\r\n");
  Received chunked;
  for (int i = 0; i < 8 && chunked.data.empty(); ++i) {
    if (!SendAll(c, chunk)) break;
    chunked = ReadUntil(c, absl::Milliseconds(200),
                        [](const std::string& d) { return !d.empty(); });
  }
  EXPECT_EQ(StatusOf(chunked.data), 503) << chunked.data;
  close(c);
  // The first one completes; its bytes are released once handled.
  ASSERT_TRUE(SendAll(a, std::string(1000, 'a')));
  EXPECT_EQ(StatusOf(ReadAnswer(a)), 200);
  EXPECT_TRUE(Eventually([&] { return server_->held_body_bytes() == 0; }));
  close(a);
}

TEST_F(EventHttpServerTest, OnePeerAddressReadsBodiesOnlyWithinItsShare) {
  EventHttpServer::Options options;
  options.max_unauthenticated_bytes = 64 * 1024;
  options.max_unauthenticated_bytes_per_ip = 8192;
  Start(options);
  // 7000 of 8192 reserved, 6000 held.
  const int a = ConnectFrom("127.0.0.2", server_->port());
  ASSERT_GE(a, 0);
  ASSERT_TRUE(SendAll(a, EchoPost("/", 7000, std::string(6000, 'a'))));
  ASSERT_TRUE(Eventually([&] { return server_->held_body_bytes() == 6000; }));
  // The same address, another 6000: it waits, unread and unanswered.
  const int b = ConnectFrom("127.0.0.2", server_->port());
  ASSERT_TRUE(SendAll(b, EchoPost("/", 6000, std::string(6000, 'b'))));
  EXPECT_TRUE(ReadUntil(b, absl::Milliseconds(300), [](const std::string& d) {
                return !d.empty();
              }).data.empty());
  EXPECT_EQ(server_->held_body_bytes(), 6000);
  // Another address is served at once.
  const int c = ConnectFrom("127.0.0.3", server_->port());
  ASSERT_TRUE(SendAll(c, EchoPost("/", 6000, std::string(6000, 'c'))));
  EXPECT_EQ(StatusOf(ReadAnswer(c)), 200);
  close(c);
  // Once the first is done, the waiting one is read and answered.
  ASSERT_TRUE(SendAll(a, std::string(1000, 'a')));
  EXPECT_EQ(StatusOf(ReadAnswer(a)), 200);
  const std::string waited = ReadAnswer(b);
  EXPECT_EQ(StatusOf(waited), 200);
  EXPECT_TRUE(absl::EndsWith(waited, std::string(6000, 'b')));
  EXPECT_TRUE(Eventually([&] { return server_->held_body_bytes() == 0; }));
  close(a);
  close(b);
}

TEST_F(EventHttpServerTest, AnswersGivenLaterFromAnotherThreadAreSent) {
  Start({});
  const int fd = Connect(server_->port());
  ASSERT_TRUE(SendAll(fd, absl::StrCat(EchoPost("/later", 5, "first"),
                                       EchoPost("/", 6, "second"))));
  // Parked: nothing is answered, not even the pipelined second request.
  EXPECT_TRUE(ReadUntil(fd, absl::Milliseconds(300), [](const std::string& d) {
                return !d.empty();
              }).data.empty());
  std::thread([&] { handler_.AnswerWaiting(); }).join();
  const Received got = ReadUntil(
      fd, absl::Seconds(10),
      [](const std::string& d) { return absl::EndsWith(d, "second"); });
  EXPECT_THAT(got.data, HasSubstr("\r\n\r\nfirst"));
  EXPECT_LT(got.data.find("first"), got.data.find("second"));
  close(fd);
}

TEST_F(EventHttpServerTest, APeerThatDoesNotReadIsDroppedAfterTheWriteTimeout) {
  EventHttpServer::Options options;
  options.write_timeout = absl::Seconds(1);
  handler_.big_answer_bytes = 32 << 20;  // far more than socket buffers
  Start(options);
  const int fd = Connect(server_->port());
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  ASSERT_TRUE(SendAll(fd, EchoPost("/big", 0)));
  ASSERT_TRUE(Eventually([&] { return server_->open_connections() == 1; }));
  const auto start = Clock::now();
  EXPECT_TRUE(Eventually([&] { return server_->open_connections() == 0; }));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4));
  EXPECT_THAT(metrics_.Render(),
              HasSubstr("hoist_webhook_timeouts_total{kind=\"write\"} 1"));
  close(fd);
}

// ---- HTTPS ------------------------------------------------------------------

class TlsFiles {
 public:
  // kind: "ec" or "rsa".
  explicit TlsFiles(const std::string& kind) {
    char tmpl[] = "/tmp/hoist-event-tls-XXXXXX";
    dir_ = mkdtemp(tmpl);
    cert = dir_ + "/cert.pem";
    key = dir_ + "/key.pem";
    const std::string newkey =
        kind == "rsa" ? "rsa:2048" : "ec -pkeyopt ec_paramgen_curve:prime256v1";
    const std::string command =
        absl::StrCat("openssl req -x509 -newkey ", newkey,
                     " -nodes -days 1 -subj /CN=127.0.0.1 -addext "
                     "subjectAltName=IP:127.0.0.1 -keyout '",
                     key, "' -out '", cert, "' >/dev/null 2>&1");
    ok = std::system(command.c_str()) == 0;
  }
  ~TlsFiles() { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  bool ok = false;
  std::string cert;
  std::string key;

 private:
  std::string dir_;
};

// A blocking TLS client with the given protocol range and TLS 1.2 ciphers,
// willing to speak anything (security level 0), so that a refusal is the
// server's.
class TlsClient {
 public:
  TlsClient(int port, int min_version, int max_version,
            const std::string& ciphers = "") {
    // OpenSSL writes with write(2): a refused handshake must not kill the
    // test with SIGPIPE.
    signal(SIGPIPE, SIG_IGN);
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(ctx_, 0);
    SSL_CTX_set_min_proto_version(ctx_, min_version);
    SSL_CTX_set_max_proto_version(ctx_, max_version);
    if (!ciphers.empty()) SSL_CTX_set_cipher_list(ctx_, ciphers.c_str());
    fd_ = Connect(port);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }
  bool Handshake() { return SSL_connect(ssl_) == 1; }
  std::string Cipher() const { return SSL_get_cipher_name(ssl_); }
  // Sends `request` and reads one answer.
  std::string Exchange(const std::string& request) {
    if (SSL_write(ssl_, request.data(), static_cast<int>(request.size())) <=
        0) {
      return "";
    }
    std::string answer;
    char buf[4096];
    while (AnswerLength(answer) == 0) {
      const int n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) break;
      answer.append(buf, static_cast<size_t>(n));
    }
    return answer;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
};

// The bytes of a TLS ClientHello (TLS 1.2 and 1.3 offered), as a client
// would send them first.
std::string ClientHello() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  SSL_connect(ssl);  // writes the ClientHello, then wants to read
  char* data = nullptr;
  const long length = BIO_get_mem_data(out, &data);  // NOLINT(runtime/int)
  std::string hello(data, static_cast<size_t>(std::max(length, 0L)));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return hello;
}

class WebhookTlsTest : public WebhookPortTest {
 protected:
  void StartTls(const TlsFiles& files,
                WebhookAuth auth = WebhookAuth::kHmacSha256) {
    ASSERT_TRUE(files.ok);
    auto config = Config(auth);
    config->webhook.tls_cert = files.cert;
    config->webhook.tls_key = files.key;
    config->webhook.request_timeout_seconds = 1;
    Start(config);
  }
  std::string SignedPost(int n) {
    const std::string body = Event(n);
    return Post(body, HmacSha256Hex(kSecret, body));
  }
};

TEST_F(WebhookTlsTest, ServesTheWebhookOverTls) {
  TlsFiles files("ec");
  StartTls(files);
  TlsClient client(port(), TLS1_2_VERSION, 0);
  ASSERT_TRUE(client.Handshake());
  const std::string answer = client.Exchange(SignedPost(1));
  EXPECT_EQ(StatusOf(answer), 202) << answer;
  // Keep-alive over TLS: a second request on the same connection.
  const std::string forged = client.Exchange(Post(Event(2), "00"));
  EXPECT_EQ(StatusOf(forged), 401) << forged;
  EXPECT_EQ(submitter_.submitted(), 1u);
}

TEST_F(WebhookTlsTest, HalfDoneHandshakesDoNotBlockOthersAndExpire) {
  TlsFiles files("ec");
  StartTls(files);
  // 50 clients stop mid-handshake: 25 after a whole ClientHello (the
  // server answers and waits for the client's next flight), 25 after half
  // of one; 50 more send nothing at all.
  const std::string hello = ClientHello();
  ASSERT_FALSE(hello.empty());
  std::vector<int> stalled;
  for (int i = 0; i < 100; ++i) {
    const int fd = Connect(port());
    ASSERT_GE(fd, 0);
    if (i % 2 == 0) {
      ASSERT_TRUE(SendAll(fd, i % 4 == 0 ? absl::string_view(hello)
                                         : absl::string_view(hello).substr(
                                               0, hello.size() / 2)));
    }
    stalled.push_back(fd);
  }
  const auto start = Clock::now();
  TlsClient client(port(), TLS1_2_VERSION, 0);
  ASSERT_TRUE(client.Handshake());
  EXPECT_EQ(StatusOf(client.Exchange(SignedPost(7))), 202);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));
  // The handshake counts against the request timeout (1 s): each stalled
  // connection is closed.
  for (int fd : stalled) {
    EXPECT_TRUE(ReadToEof(fd, absl::Seconds(5)).eof);
    close(fd);
  }
  EXPECT_THAT(Metrics(),
              HasSubstr("hoist_webhook_timeouts_total{kind=\"request\"} 100"));
}

TEST_F(WebhookTlsTest, RefusesTls11AndNonAeadCiphers) {
  TlsFiles files("rsa");
  StartTls(files);
  {
    TlsClient tls11(port(), TLS1_1_VERSION, TLS1_1_VERSION);
    EXPECT_FALSE(tls11.Handshake());
  }
  for (const char* cipher : {"AES128-SHA", "ECDHE-RSA-AES128-SHA",
                             "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA256"}) {
    TlsClient cbc(port(), TLS1_2_VERSION, TLS1_2_VERSION, cipher);
    EXPECT_FALSE(cbc.Handshake()) << cipher;
  }
  // The server's preference wins over the client's order.
  TlsClient aead(port(), TLS1_2_VERSION, TLS1_2_VERSION,
                 "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256");
  ASSERT_TRUE(aead.Handshake());
  EXPECT_EQ(aead.Cipher(), "ECDHE-RSA-AES128-GCM-SHA256");
  TlsClient tls13(port(), TLS1_3_VERSION, TLS1_3_VERSION);
  EXPECT_TRUE(tls13.Handshake());
}

TEST(WebhookTlsStartTest, CertificateAndKeyThatDoNotLoadAreInvalidArgument) {
  RecordingSubmitter submitter;
  WebhookServer::Options options;
  auto config = Config();
  config->webhook.tls_cert = "/nonexistent/cert.pem";
  config->webhook.tls_key = "/nonexistent/key.pem";
  options.config = config;
  options.submitter = &submitter;
  EXPECT_EQ(WebhookServer::Start(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- framing pieces ---------------------------------------------------------

TEST(HeadScannerTest, FindsTheEndOfAHeadFedOneByteAtATime) {
  const std::string head = "POST /x HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\nBODY";
  HeadScanner scanner;
  size_t found = 0;
  for (size_t n = 1; n <= head.size() && found == 0; ++n) {
    found = scanner.Scan(absl::string_view(head.data(), n));
  }
  EXPECT_EQ(found, head.size() - 4);
  // Bare LF line ends too.
  HeadScanner lf;
  EXPECT_EQ(lf.Scan("GET / HTTP/1.1\nHost: a\n\nrest"), 24u);
}

// The CPU attack on the old front end: 5,000 header lines sent one byte per
// packet cost 10x the CPU of the same bytes in one header, as every read
// re-parsed everything buffered. The scanner must look at each byte once.
TEST(HeadScannerTest, ExaminesEachByteOnceWhenFedOneByteAtATime) {
  std::string head = "POST /webhooks/artifactory HTTP/1.1\r\n";
  for (int i = 0; i < 5000; ++i) absl::StrAppend(&head, "X-H", i, ": v\r\n");
  head += "\r\n";
  HeadScanner scanner;
  size_t found = 0;
  for (size_t n = 1; n <= head.size() && found == 0; ++n) {
    found = scanner.Scan(absl::string_view(head.data(), n));
  }
  EXPECT_EQ(found, head.size());
  EXPECT_EQ(scanner.examined(), head.size());
}

TEST(ParseRequestHeadTest, ReadsFramingAndPersistence) {
  RequestHead head;
  ASSERT_EQ(
      ParseRequestHead("POST /a%2Fb?q=1 HTTP/1.0\r\ncontent-length: 12\r\n"
                       "Connection: Keep-Alive\r\nExpect: 100-continue"
                       "\r\nX-Empty:\r\n\r\n",
                       &head)
          .status,
      0);
  EXPECT_EQ(head.method, "POST");
  EXPECT_EQ(head.path, "/a%2Fb");
  EXPECT_EQ(PercentDecodePath(head.path), "/a/b");
  EXPECT_EQ(head.minor_version, 0);
  EXPECT_TRUE(head.has_content_length);
  EXPECT_EQ(head.content_length, 12u);
  EXPECT_TRUE(head.keep_alive);
  EXPECT_TRUE(head.expect_continue);
  ASSERT_NE(head.Find("x-empty"), nullptr);
  EXPECT_EQ(head.Find("x-empty")->value, "");
  ASSERT_EQ(ParseRequestHead("GET http://h:1/p?x HTTP/1.1\r\nConnection: "
                             "close\r\n\r\n",
                             &head)
                .status,
            0);
  EXPECT_EQ(head.path, "/p");
  EXPECT_FALSE(head.keep_alive);
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.1\r\nContent-Length: 1\r\n"
                             "Content-Length: 1\r\n\r\n",
                             &head)
                .status,
            400);
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.1\r\n folded\r\n\r\n", &head).status,
            400);
}

TEST(ChunkedDecoderTest, DecodesWhateverTheSplit) {
  const std::string raw =
      "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (size_t split = 1; split < raw.size(); ++split) {
    ChunkedDecoder decoder;
    std::string body;
    size_t consumed = 0;
    ChunkedDecoder::Result result = decoder.Feed(
        absl::string_view(raw.data(), split), 1000, &body, &consumed);
    size_t used = consumed;
    if (result == ChunkedDecoder::Result::kNeedMore) {
      ASSERT_EQ(consumed, split);
      result = decoder.Feed(absl::string_view(raw).substr(split), 1000, &body,
                            &consumed);
      used += consumed;
    }
    ASSERT_EQ(result, ChunkedDecoder::Result::kDone) << split;
    EXPECT_EQ(body, "hello, world");
    EXPECT_EQ(raw.substr(used), "NEXT") << split;
  }
  ChunkedDecoder small;
  std::string body;
  size_t consumed = 0;
  EXPECT_EQ(small.Feed("10\r\n", 15, &body, &consumed),
            ChunkedDecoder::Result::kTooLarge);
  ChunkedDecoder bad;
  EXPECT_EQ(bad.Feed("zz\r\n", 15, &body, &consumed),
            ChunkedDecoder::Result::kMalformed);
}

// ---- config -----------------------------------------------------------------

class ConfigFile {
 public:
  ConfigFile() {
    char tmpl[] = "/tmp/hoist-event-config-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(dir_ + "/secret") << "s3cret\n";
  }
  ~ConfigFile() { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  absl::StatusOr<ReceiverConfig> Load(const std::string& webhook_extra) {
    const std::string file = dir_ + "/receiver.yaml";
    std::ofstream(file) << "webhook:\n"
                           "  listen: \"127.0.0.1:0\"\n"
                           "  secret_files: [secret]\n"
                        << webhook_extra
                        << "tls: {ca: ca.pem, cert: r.pem, key: r-key.pem}\n"
                           "agents:\n"
                           "  - {name: web-1, address: \"web-1:7981\", "
                           "labels: {role: web}}\n"
                           "services:\n"
                           "  - name: hello\n"
                           "    trigger: {image: hello}\n"
                           "    image: reg.example/hello\n"
                           "    targets: {labels: {role: web}}\n"
                           "    container: {name: hello}\n";
    return LoadReceiverConfig(file);
  }

 private:
  std::string dir_;
};

TEST(WebhookLimitsConfigTest, DefaultsAndKeys) {
  ConfigFile file;
  absl::StatusOr<ReceiverConfig> defaults = file.Load("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->webhook.request_timeout_seconds, 10);
  EXPECT_EQ(defaults->webhook.idle_timeout_seconds, 30);
  EXPECT_EQ(defaults->webhook.max_connections, 10000);
  EXPECT_EQ(defaults->webhook.max_connections_per_ip, 256);
  EXPECT_EQ(defaults->webhook.max_unauthenticated_bytes, 64 << 20);
  absl::StatusOr<ReceiverConfig> set = file.Load(
      "  request_timeout_seconds: 5\n  idle_timeout_seconds: 60\n"
      "  max_connections: 500\n  max_connections_per_ip: 0\n"
      "  max_unauthenticated_bytes: 2097152\n");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->webhook.request_timeout_seconds, 5);
  EXPECT_EQ(set->webhook.idle_timeout_seconds, 60);
  EXPECT_EQ(set->webhook.max_connections, 500);
  EXPECT_EQ(set->webhook.max_connections_per_ip, 0);
  EXPECT_EQ(set->webhook.max_unauthenticated_bytes, 2097152);
}

TEST(WebhookLimitsConfigTest, BadValuesNameTheKey) {
  ConfigFile file;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"  request_timeout_seconds: 0\n", "webhook.request_timeout_seconds"},
      {"  idle_timeout_seconds: -1\n", "webhook.idle_timeout_seconds"},
      {"  max_connections: 0\n", "webhook.max_connections"},
      {"  max_connections_per_ip: many\n", "webhook.max_connections_per_ip"},
      {"  max_unauthenticated_bytes: 4096\n",
       "webhook.max_unauthenticated_bytes (4096) must be at least "
       "webhook.max_body_bytes"},
  };
  for (const auto& [yaml, message] : cases) {
    absl::StatusOr<ReceiverConfig> config = file.Load(yaml);
    ASSERT_FALSE(config.ok()) << yaml;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(message));
  }
}

}  // namespace
}  // namespace hoist::receiver
