// BufferedHttpServer: cpp-httplib's plain-HTTP server with buffered
// connection I/O.
//
// cpp-httplib 0.11 (Debian 12) serves a connection with about ten system
// calls per request: a poll() loop between keep-alive requests (10 ms
// timeout plus 1 ms sleeps), a poll() before every recv() and send(), the
// status line and headers sent apart from the body, and getpeername() and
// getsockname() again for every request. Under a flood of small webhooks
// that is most of the receiver's CPU, and all of it in the kernel.
//
// This subclass keeps httplib's request parsing, routing and handlers
// (Server::process_request) and replaces only the per-connection loop and
// the socket stream: reads go through a buffer filled by a non-blocking
// recv() (poll() only when nothing is there yet), the whole answer is
// collected and sent with one send() when the request is done, and the
// peer and local addresses are looked up once per connection. A loaded
// keep-alive connection costs one recv() and one send() per request.
//
// Behaviour kept from httplib: the keep-alive count and timeout, read and
// write timeouts, "100 Continue" (pending output is sent before any read
// that has to wait, so a client waiting for it is never stuck), pipelined
// requests (bytes read past one request stay buffered for the next).
//
// HTTPS is not handled here: httplib::SSLServer keeps its own loop.
//
// Thread-safety: as httplib::Server. CloseConnections() may be called from
// any thread.
#ifndef HOIST_RECEIVER_BUFFERED_HTTP_SERVER_H_
#define HOIST_RECEIVER_BUFFERED_HTTP_SERVER_H_

#include <httplib.h>

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hoist::receiver {

class BufferedHttpServer : public httplib::Server {
 public:
  BufferedHttpServer() = default;
  ~BufferedHttpServer() override = default;

  // Wakes every connection waiting for its next request (shutdown(2) on
  // its socket) and makes connections accepted from now on close at once,
  // so that joining the listen thread after stop() does not wait out idle
  // keep-alive connections. Requests being answered are finished.
  // Idempotent.
  void CloseConnections();

 private:
  // Serves one accepted connection until it closes, the keep-alive count or
  // timeout ends it, or CloseConnections() is called; then closes it.
  bool process_and_close_socket(socket_t sock) override;

  bool Register(socket_t sock);
  void Unregister(socket_t sock);

  absl::Mutex mu_;
  std::set<socket_t> open_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_BUFFERED_HTTP_SERVER_H_
