// EventHttpServer: the receiver's public HTTP/1.1 server (the webhook port),
// plain or HTTPS, with every connection held by a few event loops
// (docs/design.md, "Webhook connections").
//
// Threads. `event_threads` loops, each with its own epoll set; a connection
// belongs to one loop from accept to close, so its state needs no locks.
// Every loop waits on the listening socket (EPOLLEXCLUSIVE); accepted
// connections are dealt to the loops in turn. No thread is ever given to a
// connection or a slow request: a TLS handshake, a head or body arriving
// slowly, "Expect: 100-continue", a chunked body, an answer the peer reads
// slowly and a request waiting for its handler's answer all wait in epoll
// (or, parked, outside it) at the cost of their buffers.
//
// TLS is OpenSSL on the non-blocking socket: SSL_accept/SSL_read/SSL_write
// are retried when epoll reports the readiness their SSL_ERROR_WANT_READ or
// SSL_ERROR_WANT_WRITE asked for. TLS 1.2 and later only; for TLS 1.2 only
// ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (TLS 1.3 suites are
// all AEAD); the server's cipher order; no compression, no renegotiation.
//
// Requests are framed incrementally (receiver/http_framing.h), with
// keep-alive and pipelining; each head is parsed once. The handler answers
// in two stages: OnHead() before any body byte is read (it may answer at
// once: a wrong method or path, a body too large, a missing token), then
// OnRequest() with the whole body. OnRequest() answers through an
// HttpResponder, at once or later from any thread; meanwhile the connection
// is parked (not read, and out of the deadline sweep), so a handler that
// waits for a journal commit on its own thread never holds a loop.
//
// Limits and deadlines (Options), checked by a sweep every
// `sweep_interval`: a request must arrive whole within `request_timeout` of
// its first byte (over HTTPS the first request's clock starts at accept, so
// the handshake counts), else 408 and close (a connection with no request
// byte yet is just closed); a connection that sends nothing for
// `idle_timeout` (before a request, between requests) is closed; an answer
// must be taken by the peer within `write_timeout`, else the connection is
// closed. Connections over `max_connections`, or over
// `max_connections_per_ip` from one TCP peer address, are closed at once.
// Body bytes held before OnRequest() ran are counted over all connections;
// a request that would push the count over `max_unauthenticated_bytes` is
// answered 503. A body is read only once it fits in its peer address's
// share (`max_unauthenticated_bytes_per_ip`); until then it waits unread. When
// accept() runs out of file descriptors, accepting pauses for 100 ms instead of
// spinning.
//
// Answers the server makes itself (malformed requests, limits, timeouts)
// have a JSON body {"error": "..."}. Every answer that leaves body bytes
// unread carries "Connection: close"; after such an answer, and whenever
// the server closes a connection it answered, it shuts down its write side
// once the answer is sent and reads and discards what the peer still sends
// for up to `linger`, so that the peer receives the answer rather than a
// reset.
//
// Metrics (into Options::metrics): hoist_webhook_connections (open),
// hoist_webhook_connections_refused_total{reason="total_cap|ip_cap|emfile"},
// hoist_webhook_timeouts_total{kind="request|idle|write"}.
//
// Thread-safety: port(), open_connections(), held_body_bytes(),
// StopAccepting() and Stop() may be called from any thread.
#ifndef HOIST_RECEIVER_EVENT_HTTP_SERVER_H_
#define HOIST_RECEIVER_EVENT_HTTP_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "receiver/http_framing.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace hoist::receiver {

namespace event_http_internal {
class Loop;
struct Connection;

// What the server counts per TCP peer address. An entry lives while the
// address has a connection open.
struct PeerState {
  int64_t connections = 0;  // guarded by EventHttpServer::peers_mu_
  // Of max_unauthenticated_bytes_per_ip, what its admitted request bodies
  // reserved (Loop::ReserveShare).
  std::atomic<int64_t> reserved{0};
};
}  // namespace event_http_internal

// An answer. Sent with Content-Length (the body is left out for HEAD).
struct HttpAnswer {
  int status = 200;
  const char* content_type = "application/json";  // a string literal
  std::string body;
  // Extra header lines, each ending in "\r\n" (e.g. "Allow: POST\r\n").
  std::string extra_headers;
  // Close the connection after this answer (otherwise it stays open when
  // the request allows it).
  bool close = false;
};

// Sends the answer to one request, to which OnRequest() gave it. Copyable;
// Respond() must be called exactly once over all copies, from any thread,
// during OnRequest() or after it returned, and before
// EventHttpServer::Stop().
class HttpResponder {
 public:
  void Respond(HttpAnswer answer) const;
  // When the request's head was complete.
  std::chrono::steady_clock::time_point head_time() const { return head_time_; }

 private:
  friend class event_http_internal::Loop;
  HttpResponder(event_http_internal::Loop* loop,
                event_http_internal::Connection* connection,
                std::chrono::steady_clock::time_point head_time)
      : loop_(loop), connection_(connection), head_time_(head_time) {}

  event_http_internal::Loop* loop_;
  event_http_internal::Connection* connection_;
  std::chrono::steady_clock::time_point head_time_;
};

// What the server asks of its user. Both methods run on event threads and
// must not block (no disk, no journal, no network); they may run
// concurrently for different connections.
class HttpHandler {
 public:
  virtual ~HttpHandler() = default;

  struct HeadVerdict {
    // An answer to send without reading the body; nullopt to read it.
    std::optional<HttpAnswer> answer;
    // When the body is read: its most bytes. A larger Content-Length, or a
    // chunked body growing past it, is answered 413 by the server.
    uint64_t max_body = 0;
  };
  // Called once a request's head is parsed, before its body is read.
  virtual HeadVerdict OnHead(const RequestHead& head) = 0;

  // Called with the whole body (a request OnHead() let through). `head` and
  // `body` are valid only during the call. Must answer through `respond`
  // exactly once (see HttpResponder).
  virtual void OnRequest(const RequestHead& head, absl::string_view body,
                         HttpResponder respond) = 0;
};

class EventHttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // numeric address or name to bind
    int port = 0;                    // 0: any free port
    // HTTPS when both are set (PEM files: certificate chain, private key).
    std::string tls_cert;
    std::string tls_key;
    HttpHandler* handler = nullptr;      // required, not owned
    MetricsRegistry* metrics = nullptr;  // optional, not owned
    int event_threads = 2;
    int backlog = 1024;
    absl::Duration request_timeout = absl::Seconds(10);
    absl::Duration idle_timeout = absl::Seconds(30);
    absl::Duration write_timeout = absl::Seconds(10);
    absl::Duration linger = absl::Seconds(2);
    absl::Duration sweep_interval = absl::Milliseconds(100);
    int64_t max_connections = 10000;
    int64_t max_connections_per_ip = 256;  // 0: no per-address cap
    int64_t max_unauthenticated_bytes = int64_t{64} << 20;
    // Of those, what the bodies being read from one TCP peer address may
    // take at most (0: no per-address share): a body is read only once its
    // whole length fits in its address's share; until then it waits,
    // unread, within request_timeout. One client cannot take all of
    // max_unauthenticated_bytes.
    int64_t max_unauthenticated_bytes_per_ip = 0;
  };

  // Raises RLIMIT_NOFILE to its hard limit (connections need descriptors),
  // loads the TLS files, binds, listens and starts the loops.
  // INVALID_ARGUMENT for missing options, an unusable host or TLS files
  // that do not load; UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<EventHttpServer>> Start(
      Options options);

  ~EventHttpServer();  // Stop()s.
  EventHttpServer(const EventHttpServer&) = delete;
  EventHttpServer& operator=(const EventHttpServer&) = delete;

  int port() const { return port_; }

  // Stops accepting connections and requests: closes the listening socket's
  // watch, closes every connection not waiting for an answer, and answers
  // the waiting ones with "Connection: close". Returns once every loop has
  // done so: from then on OnHead() and OnRequest() are not called. Answers
  // may still be given (HttpResponder) until Stop(). Idempotent.
  void StopAccepting();

  // StopAccepting(), then sends the answers already given (as far as the
  // sockets take them at once), closes every connection and joins the
  // loops. Call only once every HttpResponder was used (or never will be).
  // Idempotent.
  void Stop();

  // Connections accepted and not yet closed.
  int64_t open_connections() const { return open_.load(); }
  // Body bytes held for requests whose OnRequest() has not run yet.
  int64_t held_body_bytes() const { return held_bytes_.load(); }

 private:
  friend class event_http_internal::Loop;
  explicit EventHttpServer(Options options);

  absl::Status Listen();
  // Admits an accepted socket (caps) and hands it to a loop, or closes it.
  void OnAccepted(int fd, const void* address, int64_t now_ms,
                  event_http_internal::Loop* accepting);
  bool TracksPeers() const {
    return options_.max_connections_per_ip > 0 ||
           options_.max_unauthenticated_bytes_per_ip > 0;
  }
  // Counts a new connection from `peer` (raw address bytes; empty when
  // peers are not tracked) against the caps; false when it is over one.
  // `*state` is the peer's entry (null when not tracked), valid until
  // Forget(peer).
  bool Admit(const std::string& peer, event_http_internal::PeerState** state);
  void Forget(const std::string& peer);
  // Counts `bytes` more held body bytes; false (nothing counted) when that
  // would pass max_unauthenticated_bytes.
  bool Hold(int64_t bytes);
  void Release(int64_t bytes);
  bool WouldPassHeldCap(uint64_t more) const;

  const Options options_;
  std::unique_ptr<MetricsRegistry> own_metrics_;
  Gauge* connections_gauge_ = nullptr;
  Counter* refused_total_cap_ = nullptr;
  Counter* refused_ip_cap_ = nullptr;
  Counter* refused_emfile_ = nullptr;
  Counter* timeouts_request_ = nullptr;
  Counter* timeouts_idle_ = nullptr;
  Counter* timeouts_write_ = nullptr;

  SSL_CTX* tls_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<std::unique_ptr<event_http_internal::Loop>> loops_;
  std::atomic<uint64_t> next_loop_{0};

  std::atomic<int64_t> open_{0};
  std::atomic<int64_t> held_bytes_{0};
  absl::Mutex peers_mu_;
  // Entries are created and erased under peers_mu_; unordered_map keeps
  // their addresses, so connections use them without it
  // (PeerState::reserved).
  std::unordered_map<std::string, event_http_internal::PeerState> per_peer_
      ABSL_GUARDED_BY(peers_mu_);

  absl::Mutex stop_mu_;  // serializes StopAccepting() and Stop()
  bool accepting_stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_EVENT_HTTP_SERVER_H_
