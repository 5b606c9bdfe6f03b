// BufferedHttpServer: cpp-httplib's plain-HTTP server with an event-driven
// connection layer.
//
// cpp-httplib 0.11 (Debian 12) gives every open connection a thread of its
// own and serves it with about ten system calls per request. Under a flood
// of small webhooks most of the receiver's CPU went to the kernel: system
// calls, and a context switch per request as each connection's thread slept
// in poll() and was woken for its next request.
//
// This subclass keeps httplib's request parsing, routing and handlers
// (Server::process_request) and replaces how connections are served:
//
// - Event path. Accepted sockets join one epoll set (one-shot, so a
//   connection is served by one thread at a time) shared by
//   `event_threads` threads. A thread that gets a ready connection reads
//   what the kernel has, frames a whole request in the connection's buffer
//   (headers, then Content-Length bytes of body), answers it with
//   process_request() on that buffer, sends the answer with one send() and
//   re-arms the connection. Idle connections hold no thread, and a loaded
//   thread picks its next connection without sleeping. A loaded keep-alive
//   connection costs one recv(), one send(), one epoll_ctl() and a share of
//   epoll_wait() per request.
// - Blocking path. A request that cannot be framed up front is handed, with
//   its connection, to a thread of an ElasticTaskQueue that serves it with
//   blocking reads until the connection closes: "Expect: 100-continue"
//   before its body (the client waits for the interim answer), chunked
//   bodies, bodies over kMaxEventBodyBytes, and bodies without a length.
//
// Handlers run on the event threads, so a handler that blocks (a journal
// commit) holds one of them; the others go on serving.
//
// Timeouts (httplib's setters): an idle connection is closed after the
// keep-alive timeout; a request must arrive whole within the read timeout
// from its first byte (so a client trickling a byte at a time is dropped,
// whatever its pace); an answer must drain within the write timeout. They
// are checked about every kSweepInterval.
//
// Behaviour kept from httplib: keep-alive count (the last request is
// answered with "Connection: close"), pipelined requests, "100 Continue",
// request size limits (enforced by process_request), peer and local
// addresses (looked up once per connection).
//
// HTTPS is not handled here: httplib::SSLServer keeps its own loop.
//
// Thread-safety: as httplib::Server. CloseConnections() and
// open_connections() may be called from any thread.
#ifndef HOIST_RECEIVER_BUFFERED_HTTP_SERVER_H_
#define HOIST_RECEIVER_BUFFERED_HTTP_SERVER_H_

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hoist::receiver {

class ElasticTaskQueue;

class BufferedHttpServer : public httplib::Server {
 public:
  struct Options {
    // Threads serving the event path. Each runs handlers inline, so this is
    // also how many slow handlers can run before ready connections wait.
    int event_threads = 4;
    // Open connections at most (event and blocking path together); a
    // connection accepted beyond it is closed at once.
    int max_connections = 10000;
    // Threads of the blocking path at most; see ElasticTaskQueue.
    int blocking_threads = 2048;
  };

  // A body up to this size is read into the connection's buffer before the
  // request is answered (event path); a larger one takes the blocking path.
  static constexpr size_t kMaxEventBodyBytes = size_t{64} * 1024;
  // Bytes of request line and headers buffered at most while waiting for
  // their end; beyond it the request is handed to process_request() as is
  // (which refuses it) and the connection closed.
  static constexpr size_t kMaxHeaderBytes = size_t{64} * 1024;
  // How often the deadlines of open connections are checked.
  static constexpr absl::Duration kSweepInterval = absl::Milliseconds(250);

  BufferedHttpServer() : BufferedHttpServer(Options()) {}
  explicit BufferedHttpServer(Options options);
  // Shutdown(). Call stop() and join the thread running listen_after_bind()
  // first.
  ~BufferedHttpServer() override;

  // Wakes every connection waiting for its next request (shutdown(2) on its
  // socket) and makes connections accepted from now on close at once, so
  // that joining the listen thread after stop() does not wait out idle
  // keep-alive connections. Requests being answered are finished.
  // Idempotent.
  void CloseConnections();

  // CloseConnections(), then waits for the requests being answered and
  // joins the event and blocking threads: no handler runs once it returns.
  // Call after stop(). Idempotent.
  void Shutdown();

  // Connections accepted and not yet closed.
  size_t open_connections() const;

  // Per-connection state; defined in the .cc file.
  struct Connection;

 private:
  // Called by httplib's accept loop (through a task queue that runs it at
  // once): registers the connection with the event path and returns.
  bool process_and_close_socket(socket_t sock) override;

  void EventLoop();
  // Serves `conn` (owned by the calling thread until it re-arms, hands off
  // or closes it) as far as its buffered and readable bytes allow.
  void Serve(Connection& conn);
  // Serve()'s steps. Each returns true when the caller still owns `conn` and
  // goes on serving it; false when `conn` was re-armed or closed.
  // One send() of conn.out: re-arms for EPOLLOUT when the socket is full,
  // closes on an error.
  bool SendSome(Connection& conn);
  // For a buffer without a whole request: one recv() of what the socket
  // has; re-arms for EPOLLIN once drained, closes once the peer closed or
  // on an error.
  bool ReadSome(Connection& conn);
  // The blocking path: serves `conn` until it closes, then closes it.
  void ServeBlocking(Connection& conn);
  // Answers one framed request of `frame_bytes` at the start of conn.in.
  // False when the connection must close after the answer is sent.
  bool Answer(Connection& conn, size_t frame_bytes);
  // Hands `conn` back to the epoll set for `events` (one-shot), with the
  // time after which the sweep shuts it down. The caller no longer owns it.
  void Arm(Connection& conn, uint32_t events, int64_t deadline_ms);
  // Unregisters, closes and frees `conn` (owned by the caller).
  void Close(Connection& conn);
  // Shuts down the sockets of connections past their deadline (the threads
  // their events then wake close them); stops the timer when none is open.
  void Sweep(int64_t now_ms);
  // CloseConnections() was called or the server was stopped.
  bool Closing() const;

  int ReadTimeoutMs() const;
  int WriteTimeoutMs() const;
  int KeepAliveMs() const;

  const Options options_;
  std::unique_ptr<ElasticTaskQueue> blocking_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;   // eventfd: makes every event thread return
  int timer_fd_ = -1;  // ticks every kSweepInterval while connections exist
  std::vector<std::thread> event_threads_;
  std::atomic<bool> stopping_{false};
  absl::Mutex shutdown_mu_;  // serializes Shutdown()

  mutable absl::Mutex mu_;
  // Every open connection. A Connection is freed only by the thread that
  // owns it, after removing it here, so a socket in this set is open.
  std::unordered_set<Connection*> open_ ABSL_GUARDED_BY(mu_);
  // CloseConnections() was called. Set under mu_, so a connection is either
  // registered before it (and shut down by it) or refused; read without mu_
  // by Closing().
  std::atomic<bool> closing_{false};
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_BUFFERED_HTTP_SERVER_H_
