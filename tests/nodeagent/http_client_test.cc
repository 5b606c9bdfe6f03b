// nodeagent/http_client.h and ProbeHttp against canned servers on loopback
// and a unix socket: framing (Content-Length, chunked, until close), what is
// sent, errors (refused, empty answer, no answer), and https with a
// certificate trusted through SSL_CERT_FILE.
#include "nodeagent/http_client.h"

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nodeagent/health_check.h"

namespace hoist::nodeagent {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Accepts connections one at a time (at most `max_accepts`), reads a request
// (headers and a Content-Length body), records it, writes `answer` and
// closes; with `hang`, writes nothing and keeps the connection open until
// the server is destroyed. With `ssl_ctx`, speaks TLS.
class CannedServer {
 public:
  CannedServer(std::string answer, bool hang = false,
               const std::string& unix_path = "", SSL_CTX* ssl_ctx = nullptr)
      : answer_(std::move(answer)), hang_(hang), ssl_ctx_(ssl_ctx) {
    if (unix_path.empty()) {
      listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof(address);
      EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), len),
                0);
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &len);
      port_ = ntohs(address.sin_port);
    } else {
      listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      unix_path.copy(address.sun_path, sizeof(address.sun_path) - 1);
      unlink(unix_path.c_str());
      EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address),
                     sizeof(address)),
                0);
    }
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
  std::string request() {
    absl::MutexLock lock(&mu_);
    return request_;
  }

 private:
  void Serve() {
    for (int i = 0; i < 16 && !stop_; ++i) {  // bounded
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      SSL* ssl = nullptr;
      if (ssl_ctx_ != nullptr) {
        ssl = SSL_new(ssl_ctx_);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
          SSL_free(ssl);
          close(fd);
          continue;
        }
      }
      std::string in;
      char buffer[4096];
      // Bounded: stops at the end of the request or of the stream.
      while (true) {
        const size_t end = in.find("\r\n\r\n");
        if (end != std::string::npos) {
          size_t length = 0;
          const size_t at = in.find("Content-Length: ");
          if (at != std::string::npos) length = std::stoul(in.substr(at + 16));
          if (in.size() >= end + 4 + length) break;
        }
        const int n = ssl != nullptr
                          ? SSL_read(ssl, buffer, sizeof(buffer))
                          : static_cast<int>(read(fd, buffer, sizeof(buffer)));
        if (n <= 0) break;
        in.append(buffer, n);
      }
      {
        absl::MutexLock lock(&mu_);
        request_ = in;
      }
      if (hang_) {
        while (!stop_) {  // until the server is destroyed
          pollfd q{fd, POLLIN, 0};
          poll(&q, 1, 20);
        }
      } else if (ssl != nullptr) {
        SSL_write(ssl, answer_.data(), static_cast<int>(answer_.size()));
        SSL_shutdown(ssl);
      } else {
        EXPECT_EQ(write(fd, answer_.data(), answer_.size()),
                  static_cast<ssize_t>(answer_.size()));
      }
      if (ssl != nullptr) SSL_free(ssl);
      close(fd);
    }
  }

  const std::string answer_;
  const bool hang_;
  SSL_CTX* const ssl_ctx_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::string request_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

HttpLimits Within(absl::Duration d) {
  HttpLimits limits;
  limits.deadline = absl::Now() + d;
  return limits;
}

std::string Url(int port, const std::string& path = "/healthz") {
  return absl::StrCat("http://127.0.0.1:", port, path);
}

TEST(HttpClientTest, ContentLengthBodyAndLowercaseHeaders) {
  CannedServer server(
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nApi-Version: 1.41\r\n\r\nhello"
      "ignored");
  auto response =
      HttpGetUrl(Url(server.port(), "/a?b=c#frag"), Within(absl::Seconds(10)));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->code, 200);
  EXPECT_EQ(response->body, "hello");
  EXPECT_EQ(response->headers["api-version"], "1.41");
  EXPECT_THAT(server.request(), StartsWith("GET /a?b=c HTTP/1.1\r\n"));
  EXPECT_THAT(
      server.request(),
      HasSubstr(absl::StrCat("Host: 127.0.0.1:", server.port(), "\r\n")));
}

TEST(HttpClientTest, ChunkedBodyIsDecodedAndStreamed) {
  CannedServer server(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\n{\"a\"\r\n7;ext=1\r\n:1}\n{}\n\r\n0\r\n\r\n");
  std::string streamed;
  HttpLimits limits = Within(absl::Seconds(10));
  limits.on_data = [&](absl::string_view data) {
    streamed.append(data.data(), data.size());
  };
  auto response = HttpGetUrl(Url(server.port()), limits);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(streamed, "{\"a\":1}\n{}\n");
  EXPECT_EQ(response->body, "");
}

TEST(HttpClientTest, ChunkWithoutItsCrlfIsMalformed) {
  CannedServer server(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nabc\r\n0\r\n\r\n");
  auto response = HttpGetUrl(Url(server.port()), Within(absl::Seconds(10)));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
}

TEST(HttpClientTest, BodyUntilCloseWithoutLength) {
  CannedServer server("HTTP/1.0 503 Service Unavailable\r\n\r\ndown for now");
  auto response = HttpGetUrl(Url(server.port()), Within(absl::Seconds(10)));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->code, 503);
  EXPECT_EQ(response->body, "down for now");
}

TEST(HttpClientTest, UnixSocketSendsMethodHeadersAndBody) {
  const std::string path =
      absl::StrCat("/tmp/hoist-http-test-", getpid(), ".sock");
  CannedServer server("HTTP/1.1 204 No Content\r\n\r\n", false, path);
  HttpRequest request;
  request.method = "POST";
  request.target = "/v1.41/containers/x/start";
  request.host = "docker";
  request.headers = {"Content-Type: application/json"};
  request.body = "{\"k\":1}";
  auto response = HttpOverUnixSocket(path, request, Within(absl::Seconds(10)));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->code, 204);
  const std::string sent = server.request();
  EXPECT_THAT(sent, StartsWith("POST /v1.41/containers/x/start HTTP/1.1\r\n"));
  EXPECT_THAT(sent, HasSubstr("Host: docker\r\n"));
  EXPECT_THAT(sent, HasSubstr("Content-Type: application/json\r\n"));
  EXPECT_THAT(sent, HasSubstr("Content-Length: 7\r\n"));
  EXPECT_THAT(sent, HasSubstr("\r\n\r\n{\"k\":1}"));
  unlink(path.c_str());
}

TEST(HttpClientTest, EmptyAnswerIsUnavailable) {
  CannedServer server("");  // accepts, reads the request, closes
  auto response = HttpGetUrl(Url(server.port()), Within(absl::Seconds(10)));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(response.status().message()),
              HasSubstr("empty answer"));
}

TEST(HttpClientTest, NoAnswerEndsAtTheDeadline) {
  CannedServer server("", /*hang=*/true);
  auto response =
      HttpGetUrl(Url(server.port()), Within(absl::Milliseconds(200)));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(HttpClientTest, StallTimeoutEndsASilentStream) {
  CannedServer server("", /*hang=*/true);
  HttpLimits limits;  // no deadline: only the stall limit ends it
  limits.stall_timeout = absl::Milliseconds(200);
  auto response = HttpGetUrl(Url(server.port()), limits);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(HttpClientTest, RefusedConnectionSaysConnect) {
  int port;
  {
    CannedServer closed("");
    port = closed.port();
  }  // nothing listens there any more
  auto response = HttpGetUrl(Url(port), Within(absl::Seconds(10)));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(response.status().message()), StartsWith("connect"));
}

TEST(HttpClientTest, MalformedUrlsAreInvalid) {
  for (const char* url : {"ftp://x/", "http://", "http://user@host/",
                          "http://host:99999/", "http://[::1/"}) {
    EXPECT_EQ(HttpGetUrl(url, Within(absl::Seconds(1))).status().code(),
              absl::StatusCode::kInvalidArgument)
        << url;
  }
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

// https: a self-signed certificate for 127.0.0.1, trusted via SSL_CERT_FILE
// (read by OpenSSL's default verify paths); without it the probe fails.
TEST(ProbeHttpTest, HttpsVerifiesThePeer) {
  char dir_template[] = "/tmp/hoist-https-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string make = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 -keyout ",
      dir, "/key.pem -out ", dir, "/cert.pem >/dev/null 2>&1");
  ASSERT_EQ(std::system(make.c_str()), 0);
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ASSERT_EQ(SSL_CTX_use_certificate_file(ctx, (dir + "/cert.pem").c_str(),
                                         SSL_FILETYPE_PEM),
            1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(ctx, (dir + "/key.pem").c_str(),
                                        SSL_FILETYPE_PEM),
            1);
  {
    CannedServer server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false,
                        "", ctx);
    const std::string url =
        absl::StrCat("https://127.0.0.1:", server.port(), "/");
    // Not trusted: the system CAs do not know this certificate.
    absl::Status untrusted = ProbeHttp(url, absl::Seconds(10));
    EXPECT_EQ(untrusted.code(), absl::StatusCode::kUnavailable);
    setenv("SSL_CERT_FILE", (dir + "/cert.pem").c_str(), 1);
    absl::Status trusted = ProbeHttp(url, absl::Seconds(10));
    unsetenv("SSL_CERT_FILE");
    EXPECT_TRUE(trusted.ok()) << trusted;
    EXPECT_THAT(server.request(), StartsWith("GET / HTTP/1.1\r\n"));
  }
  SSL_CTX_free(ctx);
  const int removed = std::system(("rm -rf " + dir).c_str());
  EXPECT_EQ(removed, 0);
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
