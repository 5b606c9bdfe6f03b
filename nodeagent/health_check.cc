#include "nodeagent/health_check.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hoist::nodeagent {
namespace {

size_t Discard(char*, size_t size, size_t count, void*) { return size * count; }

// Splits "host:port" / "[v6]:port".
bool SplitHostPort(const std::string& text, std::string* host,
                   std::string* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size())
    return false;
  *host = text.substr(0, colon);
  *port = text.substr(colon + 1);
  if (host->size() >= 2 && (*host)[0] == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  int number = 0;
  return absl::SimpleAtoi(*port, &number) && number > 0 && number < 65536;
}

// Waits until the non-blocking connect on `fd` finished or `deadline`
// passed. 0 when connected; otherwise an errno value.
int AwaitConnect(int fd, absl::Time deadline) {
  pollfd p{fd, POLLOUT, 0};
  const int64_t wait_ms =
      std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
  const int ready = poll(&p, 1, static_cast<int>(wait_ms));
  if (ready == 0) return ETIMEDOUT;
  if (ready < 0) return errno;
  int error = 0;
  socklen_t len = sizeof(error);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
  return error;
}

// Connects to `address` and closes the connection at once (the probe only
// asks whether it is accepted). 0 when accepted; otherwise an errno value.
int ConnectBefore(const addrinfo& address, absl::Time deadline) {
  const int fd = socket(address.ai_family,
                        address.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        address.ai_protocol);
  if (fd < 0) return errno;
  int error = 0;
  if (connect(fd, address.ai_addr, address.ai_addrlen) != 0) {
    error = errno == EINPROGRESS ? AwaitConnect(fd, deadline) : errno;
  }
  close(fd);
  return error;
}

}  // namespace

absl::Status ProbeHttp(const std::string& url, absl::Duration timeout) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Discard);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(
                       1, absl::ToInt64Milliseconds(timeout))));  // NOLINT
  const CURLcode result = curl_easy_perform(curl);
  long code = 0;  // NOLINT(runtime/int)
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  if (result != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": ", curl_easy_strerror(result)));
  }
  if (code < 200 || code >= 400) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": HTTP ", code));
  }
  return absl::OkStatus();
}

absl::Duration HealthProbePause(absl::Duration since_start, int late_attempts,
                                absl::Duration interval) {
  if (since_start < absl::Seconds(1))
    return std::min(absl::Milliseconds(5), interval);
  return std::min(interval, absl::Milliseconds(10) *
                                (int64_t{1} << std::min(late_attempts, 20)));
}

absl::Status ProbeTcp(const std::string& host_port, absl::Duration timeout) {
  std::string host, port;
  if (!SplitHostPort(host_port, &host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tcp check \"", host_port, "\": want host:port"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("tcp ", host_port, ": ", gai_strerror(rc)));
  }
  const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(
      found, &freeaddrinfo);
  // One deadline for all addresses: the probe as a whole is bounded.
  const absl::Time deadline = absl::Now() + timeout;
  std::string last_error = "no address";
  for (const addrinfo* a = addresses.get(); a != nullptr; a = a->ai_next) {
    const int error = ConnectBefore(*a, deadline);
    if (error == 0) return absl::OkStatus();
    last_error = std::strerror(error);
  }
  return absl::UnavailableError(
      absl::StrCat("tcp ", host_port, ": ", last_error));
}

namespace {

class RealProber : public HealthProber {
 public:
  absl::Status ProbeHttp(const std::string& url,
                         absl::Duration timeout) override {
    return nodeagent::ProbeHttp(url, timeout);
  }
  absl::Status ProbeTcp(const std::string& host_port,
                        absl::Duration timeout) override {
    return nodeagent::ProbeTcp(host_port, timeout);
  }
};

}  // namespace

HealthProber* RealHealthProber() {
  static HealthProber* prober = new RealProber();
  return prober;
}

}  // namespace hoist::nodeagent
