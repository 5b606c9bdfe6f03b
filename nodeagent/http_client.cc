#include "nodeagent/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace hoist::nodeagent {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;

std::string Errno(int error) { return std::strerror(error); }

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();  // NOLINT(runtime/int)
  if (code == 0) return "TLS error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return text;
}

// Blocks SIGPIPE on this thread while alive and discards one raised meanwhile
// (OpenSSL writes with write(2), which has no MSG_NOSIGNAL).
class ScopedNoSigpipe {
 public:
  ScopedNoSigpipe() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~ScopedNoSigpipe() {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      const timespec zero{0, 0};
      sigtimedwait(&pipe, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
};

// A connected non-blocking socket, optionally wrapped in TLS.
class Connection {
 public:
  Connection(int fd, const HttpLimits& limits) : fd_(fd), limits_(limits) {}
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  absl::Status StartTls(const std::string& host) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) return absl::InternalError(OpenSslError());
    SSL_CTX_set_default_verify_paths(ctx_);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    ssl_ = SSL_new(ctx_);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1)
      return absl::InternalError(OpenSslError());
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
      SSL_set_tlsext_host_name(ssl_, host.c_str());
      if (SSL_set1_host(ssl_, host.c_str()) != 1)
        return absl::InternalError(OpenSslError());
    }
    ScopedNoSigpipe no_sigpipe;
    while (true) {
      ERR_clear_error();
      const int rc = SSL_connect(ssl_);
      if (rc == 1) return absl::OkStatus();
      HOIST_RETURN_IF_ERROR(WaitSsl(rc, "TLS handshake"));
    }
  }

  absl::Status WriteAll(absl::string_view data) {
    ScopedNoSigpipe no_sigpipe;
    while (!data.empty()) {
      ssize_t n;
      if (ssl_ != nullptr) {
        ERR_clear_error();
        const int rc =
            SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (rc <= 0) {
          HOIST_RETURN_IF_ERROR(WaitSsl(rc, "send"));
          continue;
        }
        n = rc;
      } else {
        n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK)
            return absl::UnavailableError("send: " + Errno(errno));
          HOIST_RETURN_IF_ERROR(Wait(POLLOUT, "send"));
          continue;
        }
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  // Appends what arrives to `out`; false at the end of the stream.
  absl::StatusOr<bool> ReadSome(std::string* out) {
    char buffer[16384];
    while (true) {
      if (ssl_ != nullptr) {
        ERR_clear_error();
        const int rc = SSL_read(ssl_, buffer, sizeof(buffer));
        if (rc > 0) {
          out->append(buffer, static_cast<size_t>(rc));
          return true;
        }
        const int error = SSL_get_error(ssl_, rc);
        if (error == SSL_ERROR_ZERO_RETURN) return false;
        if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
          return false;  // closed without close_notify
        HOIST_RETURN_IF_ERROR(WaitSsl(rc, "receive"));
        continue;
      }
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n > 0) {
        out->append(buffer, static_cast<size_t>(n));
        return true;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return absl::UnavailableError("receive: " + Errno(errno));
      HOIST_RETURN_IF_ERROR(Wait(POLLIN, "receive"));
    }
  }

 private:
  absl::Status WaitSsl(int rc, const char* what) {
    const int error = SSL_get_error(ssl_, rc);
    if (error == SSL_ERROR_WANT_READ) return Wait(POLLIN, what);
    if (error == SSL_ERROR_WANT_WRITE) return Wait(POLLOUT, what);
    if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      return absl::UnavailableError(
          absl::StrCat(what, ": ", errno != 0 ? Errno(errno) : "closed"));
    }
    return absl::UnavailableError(absl::StrCat(what, ": ", OpenSslError()));
  }

  // Waits until `events` or the earlier of the deadline and the stall limit.
  absl::Status Wait(short events, const char* what) {  // NOLINT(runtime/int)
    const absl::Time now = absl::Now();
    absl::Time until = limits_.deadline;
    if (limits_.stall_timeout != absl::InfiniteDuration())
      until = std::min(until, now + limits_.stall_timeout);
    while (true) {
      const absl::Duration left = until - absl::Now();
      if (left <= absl::ZeroDuration())
        return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
      pollfd p{fd_, events, 0};
      const int64_t ms = std::min<int64_t>(
          absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
          1 << 30);
      const int rc = poll(&p, 1, static_cast<int>(ms));
      if (rc > 0) return absl::OkStatus();
      if (rc < 0 && errno != EINTR)
        return absl::UnavailableError(absl::StrCat(what, ": ", Errno(errno)));
    }
  }

  int fd_;
  const HttpLimits& limits_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

// Connects a non-blocking socket to `address`; returns the fd.
absl::StatusOr<int> Connect(int family, const sockaddr* address,
                            socklen_t length, const std::string& where,
                            const HttpLimits& limits) {
  const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return absl::UnavailableError(
        absl::StrCat("connect ", where, ": ", Errno(errno)));
  int rc = connect(fd, address, length);
  if (rc != 0 && (errno == EINPROGRESS || errno == EAGAIN)) {
    const absl::Time until =
        std::min(limits.deadline, absl::Now() + limits.connect_timeout);
    while (true) {
      const absl::Duration left = until - absl::Now();
      if (left <= absl::ZeroDuration()) {
        close(fd);
        return absl::DeadlineExceededError(
            absl::StrCat("connect ", where, ": timed out"));
      }
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1,
                static_cast<int>(absl::ToInt64Milliseconds(
                    absl::Ceil(left, absl::Milliseconds(1)))));
      if (rc > 0) {
        int error = 0;
        socklen_t len = sizeof(error);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        rc = error == 0 ? 0 : -1;
        errno = error;
        break;
      }
      if (rc < 0 && errno != EINTR) break;
    }
  }
  if (rc != 0) {
    const int error = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect ", where, ": ", Errno(error)));
  }
  if (family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

std::string Serialize(const HttpRequest& request) {
  std::string out = absl::StrCat(request.method, " ", request.target,
                                 " HTTP/1.1\r\nHost: ", request.host,
                                 "\r\nUser-Agent: hoist-agent\r\n"
                                 "Connection: close\r\n");
  for (const std::string& header : request.headers)
    absl::StrAppend(&out, header, "\r\n");
  if (request.send_body || !request.body.empty())
    absl::StrAppend(&out, "Content-Length: ", request.body.size(), "\r\n");
  absl::StrAppend(&out, "\r\n", request.body);
  return out;
}

// Reads and parses one answer.
absl::StatusOr<HttpResponse> ReadResponse(Connection& conn,
                                          const HttpRequest& request,
                                          const HttpLimits& limits) {
  HttpResponse response;
  std::string in;
  size_t header_end;
  while ((header_end = in.find("\r\n\r\n")) == std::string::npos) {
    if (in.size() > kMaxHeaderBytes)
      return absl::UnavailableError("answer headers too large");
    HOIST_ASSIGN_OR_RETURN(bool more, conn.ReadSome(&in));
    if (!more) {
      return absl::UnavailableError(in.empty()
                                        ? "empty answer (connection closed)"
                                        : "connection closed in the headers");
    }
  }
  absl::string_view head(in.data(), header_end);
  const size_t line_end = head.find("\r\n");
  absl::string_view status_line = head.substr(0, line_end);
  if (!absl::StartsWith(status_line, "HTTP/1.") || status_line.size() < 12 ||
      !absl::SimpleAtoi(status_line.substr(9, 3), &response.code)) {
    return absl::UnavailableError("malformed answer status line");
  }
  if (line_end != absl::string_view::npos) {
    absl::string_view rest = head.substr(line_end + 2);
    while (!rest.empty()) {
      const size_t eol = rest.find("\r\n");
      absl::string_view line = rest.substr(0, eol);
      rest = eol == absl::string_view::npos ? absl::string_view()
                                            : rest.substr(eol + 2);
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      response.headers[absl::AsciiStrToLower(
          absl::StripAsciiWhitespace(line.substr(0, colon)))] =
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  in.erase(0, header_end + 4);

  size_t delivered = 0;
  auto deliver = [&](absl::string_view data) -> absl::Status {
    if (data.empty()) return absl::OkStatus();
    if (limits.on_data) {
      limits.on_data(data);
      return absl::OkStatus();
    }
    delivered += data.size();
    if (delivered > limits.max_body)
      return absl::ResourceExhaustedError("answer body too large");
    response.body.append(data.data(), data.size());
    return absl::OkStatus();
  };
  if (request.method == "HEAD" || response.code == 204 ||
      response.code == 304 || response.code / 100 == 1) {
    return response;
  }
  auto header = [&](const char* name) {
    auto it = response.headers.find(name);
    return it == response.headers.end() ? std::string() : it->second;
  };
  if (absl::StrContains(absl::AsciiStrToLower(header("transfer-encoding")),
                        "chunked")) {
    // Bounded: each pass consumes input or reads more (or fails).
    size_t left_in_chunk = 0;
    bool in_data = false;
    while (true) {
      if (in_data) {
        const size_t n = std::min(left_in_chunk, in.size());
        HOIST_RETURN_IF_ERROR(deliver(absl::string_view(in.data(), n)));
        in.erase(0, n);
        left_in_chunk -= n;
        if (left_in_chunk == 0 && in.size() >= 2) {
          if (in.compare(0, 2, "\r\n") != 0)
            return absl::UnavailableError("malformed chunked answer");
          in.erase(0, 2);  // CRLF after the chunk
          in_data = false;
          continue;
        }
      } else {
        const size_t eol = in.find("\r\n");
        if (eol != std::string::npos) {
          absl::string_view size_text(in.data(), eol);
          size_text = size_text.substr(0, size_text.find(';'));
          size_text = absl::StripAsciiWhitespace(size_text);
          uint64_t size = 0;
          if (size_text.empty() || size_text.size() > 15 ||
              !absl::SimpleHexAtoi(size_text, &size)) {
            return absl::UnavailableError("malformed chunked answer");
          }
          in.erase(0, eol + 2);
          if (size == 0) return response;  // trailers ignored
          left_in_chunk = size;
          in_data = true;
          continue;
        }
        if (in.size() > kMaxHeaderBytes)
          return absl::UnavailableError("malformed chunked answer");
      }
      HOIST_ASSIGN_OR_RETURN(bool more, conn.ReadSome(&in));
      if (!more) return absl::UnavailableError("connection closed mid-answer");
    }
  }
  const std::string length_text = header("content-length");
  if (!length_text.empty()) {
    uint64_t length = 0;
    if (!absl::SimpleAtoi(length_text, &length))
      return absl::UnavailableError("malformed Content-Length");
    if (!limits.on_data && length > limits.max_body)
      return absl::ResourceExhaustedError("answer body too large");
    while (true) {
      const size_t n = std::min<uint64_t>(length, in.size());
      HOIST_RETURN_IF_ERROR(deliver(absl::string_view(in.data(), n)));
      in.erase(0, n);
      length -= n;
      if (length == 0) return response;
      HOIST_ASSIGN_OR_RETURN(bool more, conn.ReadSome(&in));
      if (!more) return absl::UnavailableError("connection closed mid-answer");
    }
  }
  // Neither: the body ends with the connection.
  while (true) {
    HOIST_RETURN_IF_ERROR(deliver(in));
    in.clear();
    HOIST_ASSIGN_OR_RETURN(bool more, conn.ReadSome(&in));
    if (!more) return response;
  }
}

absl::StatusOr<HttpResponse> Exchange(Connection& conn,
                                      const HttpRequest& request,
                                      const HttpLimits& limits) {
  HOIST_RETURN_IF_ERROR(conn.WriteAll(Serialize(request)));
  return ReadResponse(conn, request, limits);
}

}  // namespace

absl::StatusOr<HttpResponse> HttpOverUnixSocket(const std::string& socket_path,
                                                const HttpRequest& request,
                                                const HttpLimits& limits) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path too long: ", socket_path));
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  HOIST_ASSIGN_OR_RETURN(
      int fd, Connect(AF_UNIX, reinterpret_cast<const sockaddr*>(&address),
                      sizeof(address), socket_path, limits));
  Connection conn(fd, limits);
  return Exchange(conn, request, limits);
}

absl::StatusOr<HttpResponse> HttpGetUrl(const std::string& url,
                                        const HttpLimits& limits) {
  absl::string_view rest = url;
  bool tls = false;
  if (absl::StartsWithIgnoreCase(rest, "https://")) {
    tls = true;
    rest.remove_prefix(8);
  } else if (absl::StartsWithIgnoreCase(rest, "http://")) {
    rest.remove_prefix(7);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", url, "\": want http:// or https://"));
  }
  const size_t authority_end = rest.find_first_of("/?#");
  absl::string_view authority = rest.substr(0, authority_end);
  std::string target = authority_end == absl::string_view::npos
                           ? "/"
                           : std::string(rest.substr(authority_end));
  target = target.substr(0, target.find('#'));
  if (target.empty() || target[0] != '/') target = "/" + target;
  if (authority.empty() || absl::StrContains(authority, "@")) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", url, "\": want scheme://host[:port]/path"));
  }
  std::string host;
  std::string port = tls ? "443" : "80";
  if (authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos)
      return absl::InvalidArgumentError(
          absl::StrCat("\"", url, "\": bad host"));
    host = std::string(authority.substr(1, close - 1));
    absl::string_view after = authority.substr(close + 1);
    if (absl::ConsumePrefix(&after, ":"))
      port = std::string(after);
    else if (!after.empty())
      return absl::InvalidArgumentError(
          absl::StrCat("\"", url, "\": bad host"));
  } else {
    const size_t colon = authority.rfind(':');
    host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos)
      port = std::string(authority.substr(colon + 1));
  }
  int port_number = 0;
  if (host.empty() || !absl::SimpleAtoi(port, &port_number) ||
      port_number <= 0 || port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", url, "\": bad host or port"));
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &addresses);
      rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect ", authority, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(addresses,
                                                           &freeaddrinfo);
  absl::Status last = absl::UnavailableError(
      absl::StrCat("connect ", authority, ": no address"));
  for (addrinfo* a = addresses; a != nullptr; a = a->ai_next) {
    auto fd = Connect(a->ai_family, a->ai_addr, a->ai_addrlen,
                      std::string(authority), limits);
    if (!fd.ok()) {
      last = fd.status();
      if (absl::Now() >= limits.deadline) break;
      continue;
    }
    Connection conn(*fd, limits);
    if (tls) HOIST_RETURN_IF_ERROR(conn.StartTls(host));
    HttpRequest request;
    request.target = target;
    request.host = std::string(authority);
    return Exchange(conn, request, limits);
  }
  return last;
}

}  // namespace hoist::nodeagent
