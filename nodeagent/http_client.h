// A small HTTP/1.1 client for the node agent: the Engine API over the
// daemon's unix socket and the health probes' http(s):// GETs.
//
// One request per connection ("Connection: close"); answers framed by
// Content-Length, chunked transfer coding, or the end of the connection.
// https:// uses OpenSSL (already loaded for gRPC): the peer is verified
// against the system CAs and the URL's host name. No redirects, proxies,
// cookies, authentication or content coding.
//
// Why not libcurl: Debian's libcurl pulls in about 20 libraries (GnuTLS,
// Kerberos, LDAP, SSH, RTMP, ...) whose pages cost the idle agent ~4.5 MB of
// RSS; the agent needs none of them (bench/README.md, "Footprint").
//
// Thread-safety: the functions are reentrant; nothing is shared between calls.
#ifndef HOIST_NODEAGENT_HTTP_CLIENT_H_
#define HOIST_NODEAGENT_HTTP_CLIENT_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hoist::nodeagent {

struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";          // path and query, already escaped
  std::string host = "localhost";    // the Host header
  std::vector<std::string> headers;  // "Name: value" lines
  std::string body;
  bool send_body = false;  // send Content-Length (and the body) even if empty
};

struct HttpResponse {
  int code = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;  // empty when HttpLimits::on_data took the body
};

struct HttpLimits {
  absl::Duration connect_timeout = absl::Seconds(5);
  // The whole exchange ends by then (DEADLINE_EXCEEDED otherwise).
  absl::Time deadline = absl::InfiniteFuture();
  // No byte for this long while sending or receiving: DEADLINE_EXCEEDED.
  absl::Duration stall_timeout = absl::InfiniteDuration();
  // When set, receives the (de-chunked) body as it arrives.
  std::function<void(absl::string_view)> on_data;
  // Larger bodies (not passed to on_data) fail with RESOURCE_EXHAUSTED.
  size_t max_body = 64 << 20;
};

// Errors: UNAVAILABLE (cannot connect: message starts with "connect"; reset,
// closed early, malformed answer), DEADLINE_EXCEEDED (connect_timeout,
// deadline or stall_timeout), INVALID_ARGUMENT (bad URL), RESOURCE_EXHAUSTED.
// Any HTTP status is a successful exchange; the caller judges `code`.
absl::StatusOr<HttpResponse> HttpOverUnixSocket(const std::string& socket_path,
                                                const HttpRequest& request,
                                                const HttpLimits& limits);

// GET `url` ("http://host[:port]/path" or https://; "[v6]" hosts). Every
// address the name resolves to is tried until one connects.
absl::StatusOr<HttpResponse> HttpGetUrl(const std::string& url,
                                        const HttpLimits& limits);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_HTTP_CLIENT_H_
