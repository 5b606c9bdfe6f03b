#include "receiver/event_http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <limits>
#include <thread>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/log.h"

namespace hoist::receiver {
namespace event_http_internal {
namespace {

// One read takes what the kernel has, up to this.
constexpr size_t kReadBytes = size_t{64} * 1024;
// Pipelined requests are answered while less output than this waits for the
// peer; beyond it the connection waits until the peer reads.
constexpr size_t kMaxPendingOutput = size_t{64} * 1024;
// Buffers grown past this by a large request are freed after it.
constexpr size_t kKeepBufferBytes = size_t{64} * 1024;
// Read-process-write rounds one connection gets before the loop turns to
// the others (it continues in the same loop turn's ready list).
constexpr int kMaxRoundsPerTurn = 16;
// Bytes discarded at most while lingering before a close.
constexpr size_t kMaxLingerBytes = size_t{1} << 20;
constexpr int kAcceptsPerWake = 64;
constexpr int64_t kAcceptPauseMs = 100;
constexpr int kMaxEvents = 128;
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// TLS 1.2 suites: ECDHE with AEAD only (TLS 1.3 suites are all AEAD).
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// epoll tags of the two descriptors that are not connections.
char kWakeTag;
char kListenTag;

int64_t NowMs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

int64_t Millis(absl::Duration d) {
  return std::max<int64_t>(absl::ToInt64Milliseconds(d), 1);
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

// {"error": reason} (the server's own reasons are plain ASCII; escaped
// anyway).
std::string ErrorBody(absl::string_view reason) {
  std::string body = "{\"error\":\"";
  for (char c : reason) {
    if (c == '"' || c == '\\') {
      body.push_back('\\');
      body.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(
          &body, "\\u00",
          absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      body.push_back(c);
    }
  }
  body += "\"}";
  return body;
}

HttpAnswer ErrorAnswer(int status, absl::string_view reason) {
  HttpAnswer answer;
  answer.status = status;
  answer.body = ErrorBody(reason);
  answer.close = true;
  return answer;
}

// The raw address bytes of a TCP peer, IPv4-mapped IPv6 as IPv4.
std::string PeerKey(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    const auto& in4 = reinterpret_cast<const sockaddr_in&>(address);
    return std::string(reinterpret_cast<const char*>(&in4.sin_addr), 4);
  }
  if (address.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    const char* bytes = reinterpret_cast<const char*>(&in6.sin6_addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) return std::string(bytes + 12, 4);
    return std::string(bytes, 16);
  }
  return std::string();
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();  // NOLINT(google-runtime-int)
  if (code == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

// The server's TLS context (see the header for the settings).
absl::StatusOr<SSL_CTX*> MakeTlsContext(const std::string& cert,
                                        const std::string& key) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // Partial writes and a moving buffer: output lives in a std::string that
  // may grow between retries. Idle connections give their buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    const std::string why = OpenSslError();
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load webhook TLS certificate ", cert, " and key ",
                     key, ": ", why));
  }
  return ctx;
}

// OpenSSL's own socket BIO writes with write(2): a peer that reset would
// raise SIGPIPE in a process that does not ignore it. This one sends with
// MSG_NOSIGNAL; otherwise it is the plain non-blocking socket BIO.
int SocketOf(BIO* bio) { return *static_cast<const int*>(BIO_get_data(bio)); }

int SocketBioWrite(BIO* bio, const char* data, int length) {
  BIO_clear_retry_flags(bio);
  const ssize_t n =
      ::send(SocketOf(bio), data, static_cast<size_t>(length), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_write(bio);
  }
  return static_cast<int>(n);
}

int SocketBioRead(BIO* bio, char* data, int length) {
  BIO_clear_retry_flags(bio);
  const ssize_t n = ::recv(SocketOf(bio), data, static_cast<size_t>(length), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_read(bio);
  }
  return static_cast<int>(n);
}

long SocketBioCtrl(BIO*, int command, long,
                   void*) {  // NOLINT(google-runtime-int)
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

int SocketBioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* SocketBioMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "hoist socket");
    BIO_meth_set_write(m, SocketBioWrite);
    BIO_meth_set_read(m, SocketBioRead);
    BIO_meth_set_ctrl(m, SocketBioCtrl);
    BIO_meth_set_create(m, SocketBioCreate);
    return m;
  }();
  return method;
}

// A server-side TLS session over the socket `*fd` (which must outlive it);
// nullptr when OpenSSL cannot make one.
SSL* NewTlsSession(SSL_CTX* ctx, const int* fd) {
  SSL* ssl = SSL_new(ctx);
  BIO* bio = ssl == nullptr ? nullptr : BIO_new(SocketBioMethod());
  if (bio == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  BIO_set_data(bio, const_cast<int*>(fd));
  SSL_set_bio(ssl, bio, bio);  // one reference, owned by ssl
  SSL_set_accept_state(ssl);
  return ssl;
}

// Connections need a descriptor each; the soft limit (often 1024) would
// cap them long before max_connections.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max)
    return;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
    LogInfo(
        "raised the open file limit",
        {{"from", absl::StrCat(before)}, {"to", absl::StrCat(limit.rlim_cur)}});
  }
}

}  // namespace

enum class Phase : uint8_t {
  kHandshake,  // TLS handshake
  kIdle,       // waiting for a request's first byte
  kHead,       // a request's head is arriving
  kBody,       // its body is arriving
  kParked,     // the handler has the request: waiting for its answer
  kLinger,     // answered, write side shut: discarding input until EOF
  kClosed,     // closed; freed at the end of the loop's turn
};

enum class DeadlineKind : uint8_t { kNone, kIdle, kRequest, kWrite, kLinger };

// What a step of serving a connection needs next.
enum class Io : uint8_t {
  kDone,       // progress made
  kWantRead,   // wait until the socket is readable
  kWantWrite,  // wait until it is writable
  kParked,     // wait for the handler's answer
  kBudget,     // wait for the peer's share of unauthenticated bytes
  kClosed,     // the connection was closed
};

enum class Step : uint8_t {
  kMore,       // progress: go on
  kNeedInput,  // read more
  kWaitShare,  // wait for room in the peer's share (then read)
  kStop,       // parked, closing or nothing to do here
};

// One connection. Owned and used only by its loop's thread; other threads
// hold its address only to post an answer to the loop.
struct Connection {
  Connection(int socket, std::string peer_key, PeerState* state,
             int64_t accepted)
      : fd(socket),
        peer(std::move(peer_key)),
        peer_state(state),
        accepted_ms(accepted) {
    head.fields.reserve(16);
  }

  const int fd;
  const std::string peer;       // for the per-address counts
  PeerState* const peer_state;  // its entry; null when not tracked
  const int64_t accepted_ms;
  SSL* ssl = nullptr;
  size_t index = 0;  // in Loop::conns_
  Phase phase = Phase::kIdle;

  std::string in;  // received, not yet consumed from in_pos on
  size_t in_pos = 0;
  std::string out;  // to send, from out_pos on
  size_t out_pos = 0;
  bool maybe_more = true;  // plain HTTP: the socket may hold more input

  // The request being served.
  std::string head_bytes;  // its head, copied out of `in`
  RequestHead head;        // views into head_bytes
  bool head_valid = false;
  HeadScanner scanner;
  ChunkedDecoder chunked;
  std::string chunked_body;
  uint64_t max_body = 0;
  int64_t held = 0;  // body bytes counted as held before the handler ran
  // Reserved in its peer's share of unauthenticated bytes (0 before the
  // body may be read).
  int64_t reserved = 0;
  bool admitted = false;  // its body may be read
  std::chrono::steady_clock::time_point head_time;
  uint64_t answered = 0;  // requests answered

  int64_t request_start_ms = 0;
  int64_t idle_since_ms = 0;
  int64_t write_since_ms = 0;  // output has waited since (0: none waits)
  int64_t linger_until_ms = 0;
  size_t lingered = 0;
  int64_t deadline_ms = kNever;
  DeadlineKind deadline = DeadlineKind::kNone;

  uint32_t events = 0;  // epoll interest
  bool in_epoll = false;
  bool close_after_write = false;
  bool queued_ready = false;
  // Its handler has the request and will answer through an HttpResponder:
  // the object must live until that answer arrives, even once closed.
  bool answer_pending = false;
  // Waiting for room in its peer's share; retried at each sweep.
  bool budget_blocked = false;
};

// The connection whose OnRequest() runs on this thread, if any: an answer
// given during the call is written at once instead of posted.
thread_local Connection* t_answering = nullptr;

// One event loop: an epoll set, its connections and a thread.
class Loop {
 public:
  explicit Loop(EventHttpServer& server)
      : server_(server),
        request_ms_(Millis(server.options_.request_timeout)),
        idle_ms_(Millis(server.options_.idle_timeout)),
        write_ms_(Millis(server.options_.write_timeout)),
        linger_ms_(Millis(server.options_.linger)),
        sweep_ms_(Millis(server.options_.sweep_interval)),
        buffer_(new char[kReadBytes]) {}
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  absl::Status Init(int listen_fd);
  void StartThread() {
    thread_ = std::thread([this] { Run(); });
  }
  bool running() const { return thread_.joinable(); }
  // Asks the thread to stop and joins it; then closes every connection.
  void Exit();

  // From any thread.
  void PostConnection(int fd, std::string peer, PeerState* state,
                      int64_t accepted_ms);
  void PostAnswer(Connection* c, HttpAnswer answer);
  void PostStopAccepting(absl::BlockingCounter* done);

  // On this loop's thread.
  void Register(int fd, std::string peer, PeerState* state,
                int64_t accepted_ms);
  void AnswerInline(Connection& c, const HttpAnswer& answer) {
    QueueAnswer(c, answer, false);
  }

 private:
  struct Incoming {
    int fd;
    std::string peer;
    PeerState* state;
    int64_t accepted_ms;
  };
  struct Inbox {
    std::vector<Incoming> connections;
    std::vector<std::pair<Connection*, HttpAnswer>> answers;
    absl::BlockingCounter* stop_accepting = nullptr;
    bool exit = false;
  };

  void Run();
  int TimeoutMs() const;
  void Wake();
  void HandleInbox();
  void OnEvent(Connection& c, uint32_t events);
  void RunReady();
  void FreeClosed();

  // Serving a connection.
  void Drive(Connection& c);
  // One round of Drive(): kDone to go on, kClosed, or what to wait for.
  Io Round(Connection& c);
  Io Handshake(Connection& c);
  Step ProcessInput(Connection& c);
  Step BeginRequest(Connection& c);
  Step ReadHead(Connection& c);
  Step OnHead(Connection& c);
  bool ReserveShare(Connection& c);
  Step ReadBody(Connection& c);
  Step ReadChunkedBody(Connection& c);
  Step Dispatch(Connection& c, absl::string_view body);
  void AnswerWithoutBody(Connection& c, const HttpAnswer& answer);
  void Refuse(Connection& c, int status, absl::string_view reason) {
    QueueAnswer(c, ErrorAnswer(status, reason), true);
  }
  void QueueAnswer(Connection& c, const HttpAnswer& answer, bool body_unread);
  void AppendAnswer(Connection& c, const HttpAnswer& answer, bool keep);
  void EndRequest(Connection& c);
  bool HoldBody(Connection& c, uint64_t total);
  void ReleaseBody(Connection& c);

  // I/O.
  Io Read(Connection& c);
  Io ReadTls(Connection& c);
  Io Flush(Connection& c);
  Io FlushTls(Connection& c);
  Io Blocked(Connection& c, Io io) {
    if (c.write_since_ms == 0) c.write_since_ms = now_ms_;
    return io;
  }
  void Compact(Connection& c);
  Io StartLinger(Connection& c);
  Io Linger(Connection& c);
  void Wait(Connection& c, Io io);
  bool Watch(Connection& c, uint32_t events);
  void MarkReady(Connection& c);
  void Close(Connection& c);

  // Deadlines and accepting.
  void UpdateDeadline(Connection& c);
  void Sweep();
  void Expire(Connection& c);
  void AcceptSome();
  void PauseAccepting();
  void ResumeAccepting();
  void StopAcceptingHere();

  EventHttpServer& server_;
  const int64_t request_ms_;
  const int64_t idle_ms_;
  const int64_t write_ms_;
  const int64_t linger_ms_;
  const int64_t sweep_ms_;
  std::unique_ptr<char[]> buffer_;  // for reads; kReadBytes
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int listen_fd_ = -1;
  std::thread thread_;

  // Used by the loop's thread only (and by Exit() once it was joined).
  std::vector<Connection*> conns_;
  std::vector<Connection*> ready_;
  std::vector<Connection*> closed_;
  // Closed connections whose handler has not answered yet.
  std::unordered_set<Connection*> orphans_;
  int64_t now_ms_ = 0;
  int64_t next_sweep_ms_ = 0;
  int64_t accept_resume_ms_ = 0;  // accepting paused until then (0: not)
  int64_t last_pause_log_ms_ = -kNever / 2;
  bool draining_ = false;  // StopAccepting() reached this loop
  bool exit_ = false;
  Inbox spare_;  // the previous inbox, kept for its capacity

  absl::Mutex mu_;
  Inbox inbox_ ABSL_GUARDED_BY(mu_);
  bool signalled_ ABSL_GUARDED_BY(mu_) = false;
};

Loop::~Loop() {
  for (int fd : {epoll_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

absl::Status Loop::Init(int listen_fd) {
  listen_fd_ = listen_fd;
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create event descriptors: ", strerror(errno)));
  }
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.ptr = &kWakeTag;
  epoll_event listen{};
  // Exclusive: a new connection wakes one waiting loop, not all of them.
  listen.events = EPOLLIN | EPOLLEXCLUSIVE;
  listen.data.ptr = &kListenTag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake) != 0 ||
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &listen) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot watch the listening socket: ", strerror(errno)));
  }
  return absl::OkStatus();
}

void Loop::Run() {
  epoll_event events[kMaxEvents];
  while (!exit_) {
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, TimeoutMs());
    now_ms_ = NowMs();
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &kWakeTag) {
        woken = true;
      } else if (tag == &kListenTag) {
        AcceptSome();
      } else {
        OnEvent(*static_cast<Connection*>(tag), events[i].events);
      }
    }
    if (woken) HandleInbox();
    RunReady();
    if (now_ms_ >= next_sweep_ms_) Sweep();
    ResumeAccepting();
    FreeClosed();
  }
}

int Loop::TimeoutMs() const {
  if (!ready_.empty()) return 0;
  int64_t until = conns_.empty() ? kNever : next_sweep_ms_;
  if (accept_resume_ms_ != 0) until = std::min(until, accept_resume_ms_);
  if (until == kNever) return -1;
  return static_cast<int>(std::clamp<int64_t>(until - NowMs(), 0, INT_MAX));
}

void Loop::Wake() {
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void Loop::PostConnection(int fd, std::string peer, PeerState* state,
                          int64_t accepted_ms) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    inbox_.connections.push_back({fd, std::move(peer), state, accepted_ms});
    wake = !std::exchange(signalled_, true);
  }
  if (wake) Wake();
}

void Loop::PostAnswer(Connection* c, HttpAnswer answer) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    inbox_.answers.emplace_back(c, std::move(answer));
    wake = !std::exchange(signalled_, true);
  }
  if (wake) Wake();
}

void Loop::PostStopAccepting(absl::BlockingCounter* done) {
  {
    absl::MutexLock lock(&mu_);
    inbox_.stop_accepting = done;
    signalled_ = true;
  }
  Wake();
}

void Loop::Exit() {
  if (thread_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      inbox_.exit = true;
      signalled_ = true;
    }
    Wake();
    thread_.join();
  }
  // The thread is gone: what it owned is this thread's now.
  absl::MutexLock lock(&mu_);
  for (Incoming& incoming : inbox_.connections) {
    ::close(incoming.fd);
    server_.Forget(incoming.peer);
  }
  inbox_.connections.clear();
  inbox_.answers.clear();
  while (!conns_.empty()) Close(*conns_.back());
  FreeClosed();
  // No answer comes any more (see EventHttpServer::Stop()).
  for (Connection* orphan : orphans_) delete orphan;
  orphans_.clear();
}

void Loop::HandleInbox() {
  uint64_t count = 0;
  (void)!::read(wake_fd_, &count, sizeof(count));
  {
    absl::MutexLock lock(&mu_);
    std::swap(spare_, inbox_);
    signalled_ = false;
  }
  for (Incoming& incoming : spare_.connections) {
    Register(incoming.fd, std::move(incoming.peer), incoming.state,
             incoming.accepted_ms);
  }
  for (auto& [c, answer] : spare_.answers) {
    if (c->phase == Phase::kClosed && c->answer_pending) {
      orphans_.erase(c);  // closed while its handler worked: now it may go
      closed_.push_back(c);
      continue;
    }
    if (c->phase != Phase::kParked) {
      LogError("webhook server: an answer for a request not waiting for one");
      continue;
    }
    c->answer_pending = false;
    QueueAnswer(*c, answer, false);
    Drive(*c);
  }
  if (spare_.stop_accepting != nullptr) {
    StopAcceptingHere();
    spare_.stop_accepting->DecrementCount();
  }
  exit_ = exit_ || spare_.exit;
  spare_.connections.clear();
  spare_.answers.clear();
  spare_.stop_accepting = nullptr;
  spare_.exit = false;
}

void Loop::Register(int fd, std::string peer, PeerState* state,
                    int64_t accepted_ms) {
  if (draining_) {
    ::close(fd);
    server_.Forget(peer);
    return;
  }
  auto* c = new Connection(fd, std::move(peer), state, accepted_ms);
  c->index = conns_.size();
  conns_.push_back(c);
  if (server_.tls_ != nullptr) {
    c->ssl = NewTlsSession(server_.tls_, &c->fd);
    if (c->ssl == nullptr) {
      Close(*c);
      return;
    }
    c->phase = Phase::kHandshake;
  } else {
    c->idle_since_ms = accepted_ms;
  }
  Wait(*c, Io::kWantRead);
}

void Loop::OnEvent(Connection& c, uint32_t events) {
  if (c.phase == Phase::kClosed) return;
  // A parked connection (waiting for its answer) or one waiting for its
  // peer's share watches nothing (unless output is pending): an error or a
  // hang-up, which epoll reports anyway, means the peer is gone.
  if ((c.phase == Phase::kParked || c.budget_blocked) &&
      (events & (EPOLLERR | EPOLLHUP)) != 0) {
    Close(c);
    return;
  }
  c.maybe_more = true;
  Drive(c);
}

void Loop::RunReady() {
  std::vector<Connection*> ready;
  ready.swap(ready_);
  for (Connection* c : ready) {
    c->queued_ready = false;
    if (c->phase != Phase::kClosed) Drive(*c);
  }
}

void Loop::FreeClosed() {
  for (Connection* c : closed_) delete c;
  closed_.clear();
}

void Loop::MarkReady(Connection& c) {
  if (c.queued_ready) return;
  c.queued_ready = true;
  ready_.push_back(&c);
}

// Serves `c` as far as its buffered and readable bytes allow: answers
// complete requests, sends, reads; then waits for the readiness it needs.
void Loop::Drive(Connection& c) {
  for (int round = 0; round < kMaxRoundsPerTurn; ++round) {
    const Io io = Round(c);
    if (io == Io::kClosed) return;
    if (io != Io::kDone) {
      Wait(c, io);
      return;
    }
  }
  UpdateDeadline(c);
  MarkReady(c);  // more to do once the other connections had their turn
}

Io Loop::Round(Connection& c) {
  if (c.phase == Phase::kHandshake) return Handshake(c);
  if (c.phase == Phase::kLinger) return Linger(c);
  const Step step = ProcessInput(c);
  if (c.out_pos < c.out.size()) {
    if (const Io io = Flush(c); io != Io::kDone) return io;
  }
  if (c.close_after_write) return StartLinger(c);
  if (c.phase == Phase::kParked) return Io::kParked;
  if (step == Step::kMore) return Io::kDone;
  if (step == Step::kWaitShare) return Io::kBudget;
  return Read(c);
}

Io Loop::Handshake(Connection& c) {
  ERR_clear_error();
  const int result = SSL_accept(c.ssl);
  if (result == 1) {
    c.phase = Phase::kIdle;
    c.idle_since_ms = now_ms_;
    return Io::kDone;
  }
  switch (SSL_get_error(c.ssl, result)) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    default:
      // A refused handshake (an old protocol version, no common cipher):
      // OpenSSL has queued its alert; the peer learns no more.
      Close(c);
      return Io::kClosed;
  }
}

Step Loop::ProcessInput(Connection& c) {
  while (!c.close_after_write && c.out.size() - c.out_pos < kMaxPendingOutput) {
    Step step = Step::kStop;
    switch (c.phase) {
      case Phase::kIdle:
        step = BeginRequest(c);
        break;
      case Phase::kHead:
        step = ReadHead(c);
        break;
      case Phase::kBody:
        step = ReadBody(c);
        break;
      default:
        return Step::kStop;
    }
    if (step != Step::kMore) return step;
  }
  // Closing after the answers queued, or waiting for the peer to read them.
  return Step::kMore;
}

Step Loop::BeginRequest(Connection& c) {
  // Empty lines before a request line are ignored (RFC 9112, 2.2).
  while (c.in_pos < c.in.size() &&
         (c.in[c.in_pos] == '\r' || c.in[c.in_pos] == '\n')) {
    ++c.in_pos;
  }
  if (c.in_pos == c.in.size()) return Step::kNeedInput;
  c.phase = Phase::kHead;
  // Over HTTPS the handshake is part of the first request.
  c.request_start_ms =
      c.ssl != nullptr && c.answered == 0 ? c.accepted_ms : now_ms_;
  return Step::kMore;
}

Step Loop::ReadHead(Connection& c) {
  const absl::string_view pending(c.in.data() + c.in_pos,
                                  c.in.size() - c.in_pos);
  const size_t length = c.scanner.Scan(pending);
  if (length == 0 && pending.size() <= kMaxHeadBytes) return Step::kNeedInput;
  if (length == 0 || length > kMaxHeadBytes) {
    Refuse(c, 431, "request head over 64 KiB");
    return Step::kMore;
  }
  c.head_bytes.assign(pending.data(), length);
  c.in_pos += length;
  c.scanner.Reset();
  c.head_time = std::chrono::steady_clock::now();
  if (const HeadError error = ParseRequestHead(c.head_bytes, &c.head);
      error.status != 0) {
    Refuse(c, error.status, error.reason);
    return Step::kMore;
  }
  c.head_valid = true;
  return OnHead(c);
}

// The pre-body checks: the handler's, the body limit and the unauthenticated
// bytes cap; then "100 Continue" when the client waits for it.
Step Loop::OnHead(Connection& c) {
  HttpHandler::HeadVerdict verdict = server_.options_.handler->OnHead(c.head);
  if (verdict.answer.has_value()) {
    AnswerWithoutBody(c, *verdict.answer);
    return Step::kMore;
  }
  const RequestHead& head = c.head;
  if (head.has_content_length && head.content_length > verdict.max_body) {
    Refuse(c, 413,
           absl::StrCat("body of ", head.content_length,
                        " bytes is over the limit of ", verdict.max_body));
    return Step::kMore;
  }
  if (head.has_content_length &&
      server_.WouldPassHeldCap(head.content_length)) {
    Refuse(c, 503, "busy");
    return Step::kMore;
  }
  c.max_body = verdict.max_body;
  c.admitted = false;
  c.phase = Phase::kBody;
  c.chunked.Reset();
  if (c.chunked_body.capacity() > kKeepBufferBytes) {
    std::string().swap(c.chunked_body);
  }
  c.chunked_body.clear();
  return Step::kMore;
}

void Loop::AnswerWithoutBody(Connection& c, const HttpAnswer& answer) {
  bool unread = c.head.chunked;
  if (c.head.has_content_length && c.head.content_length > 0) {
    // A body that is already here whole is skipped; one still coming
    // would be read as the next request: close instead.
    const size_t available = c.in.size() - c.in_pos;
    if (c.head.content_length <= available) {
      c.in_pos += static_cast<size_t>(c.head.content_length);
    } else {
      unread = true;
    }
  }
  QueueAnswer(c, answer, unread);
}

// A body is read only once its peer's share of unauthenticated bytes has
// room for all of it (chunked: for max_body), so that one client cannot
// take the whole of max_unauthenticated_bytes: its further requests wait
// (unread, within the request deadline) instead. A request admitted holds
// its reservation to the end, so requests of one peer never wait for each
// other's bodies.
bool Loop::ReserveShare(Connection& c) {
  const int64_t share = server_.options_.max_unauthenticated_bytes_per_ip;
  if (c.peer_state == nullptr || share <= 0 || !c.head.HasBody()) return true;
  const int64_t need = static_cast<int64_t>(
      c.head.chunked ? std::min<uint64_t>(c.max_body, share)
                     : std::min<uint64_t>(c.head.content_length,
                                          std::numeric_limits<int64_t>::max()));
  const int64_t total = c.peer_state->reserved.fetch_add(need) + need;
  // Alone, a request may take more than the share (else it never would).
  if (total > share && total != need) {
    c.peer_state->reserved.fetch_sub(need);
    return false;
  }
  c.reserved = need;
  return true;
}

Step Loop::ReadBody(Connection& c) {
  if (!c.admitted) {
    if (!ReserveShare(c)) return Step::kWaitShare;
    c.admitted = true;
    const RequestHead& head = c.head;
    if (head.expect_continue && head.minor_version >= 1 && head.HasBody() &&
        c.in_pos == c.in.size()) {
      c.out.append("HTTP/1.1 100 Continue\r\n\r\n");
    }
  }
  if (c.head.chunked) return ReadChunkedBody(c);
  const uint64_t length = c.head.content_length;
  const uint64_t have =
      std::min<uint64_t>(c.in.size() - c.in_pos, c.head.content_length);
  if (!HoldBody(c, have)) {
    Refuse(c, 503, "busy");
    return Step::kMore;
  }
  if (have < length) return Step::kNeedInput;
  const absl::string_view body(c.in.data() + c.in_pos,
                               static_cast<size_t>(length));
  c.in_pos += static_cast<size_t>(length);
  return Dispatch(c, body);
}

Step Loop::ReadChunkedBody(Connection& c) {
  size_t consumed = 0;
  const ChunkedDecoder::Result result = c.chunked.Feed(
      absl::string_view(c.in.data() + c.in_pos, c.in.size() - c.in_pos),
      static_cast<size_t>(
          std::min<uint64_t>(c.max_body, std::numeric_limits<size_t>::max())),
      &c.chunked_body, &consumed);
  c.in_pos += consumed;
  if (!HoldBody(c, c.chunked_body.size())) {
    Refuse(c, 503, "busy");
    return Step::kMore;
  }
  switch (result) {
    case ChunkedDecoder::Result::kNeedMore:
      return Step::kNeedInput;
    case ChunkedDecoder::Result::kTooLarge:
      Refuse(c, 413,
             absl::StrCat("body is over the limit of ", c.max_body, " bytes"));
      return Step::kMore;
    case ChunkedDecoder::Result::kMalformed:
      Refuse(c, 400, "malformed chunked body");
      return Step::kMore;
    case ChunkedDecoder::Result::kDone:
      break;
  }
  return Dispatch(c, c.chunked_body);
}

Step Loop::Dispatch(Connection& c, absl::string_view body) {
  c.phase = Phase::kParked;
  t_answering = &c;
  server_.options_.handler->OnRequest(c.head, body,
                                      HttpResponder(this, &c, c.head_time));
  t_answering = nullptr;
  // The handler has seen the body: it no longer counts as unauthenticated.
  ReleaseBody(c);
  if (c.phase != Phase::kParked) return Step::kMore;  // answered at once
  c.answer_pending = true;
  return Step::kStop;
}

void Loop::QueueAnswer(Connection& c, const HttpAnswer& answer,
                       bool body_unread) {
  const bool keep = c.head_valid && c.head.keep_alive && !answer.close &&
                    !body_unread && !draining_;
  AppendAnswer(c, answer, keep);
  if (!keep) c.close_after_write = true;
  EndRequest(c);
}

void Loop::AppendAnswer(Connection& c, const HttpAnswer& answer, bool keep) {
  if (c.out_pos == c.out.size()) {
    c.out.clear();
    c.out_pos = 0;
  }
  absl::StrAppend(&c.out, "HTTP/1.1 ", answer.status, " ",
                  ReasonPhrase(answer.status),
                  "\r\nContent-Type: ", answer.content_type,
                  "\r\nContent-Length: ", answer.body.size(), "\r\n");
  if (!keep) {
    c.out.append("Connection: close\r\n");
  } else if (c.head.minor_version == 0) {
    c.out.append("Connection: keep-alive\r\n");
  }
  c.out.append(answer.extra_headers);
  c.out.append("\r\n");
  if (!c.head_valid || c.head.method != "HEAD") c.out.append(answer.body);
}

void Loop::EndRequest(Connection& c) {
  ReleaseBody(c);
  c.phase = Phase::kIdle;
  c.idle_since_ms = now_ms_;
  c.head_valid = false;
  c.scanner.Reset();
  ++c.answered;
}

bool Loop::HoldBody(Connection& c, uint64_t total) {
  const int64_t more = static_cast<int64_t>(total) - c.held;
  if (more <= 0) return true;
  if (!server_.Hold(more)) return false;
  c.held += more;
  return true;
}

void Loop::ReleaseBody(Connection& c) {
  if (c.held != 0) server_.Release(c.held);
  c.held = 0;
  if (c.reserved != 0) c.peer_state->reserved.fetch_sub(c.reserved);
  c.reserved = 0;
}

void Loop::Compact(Connection& c) {
  if (c.in_pos == c.in.size()) {
    c.in.clear();
    c.in_pos = 0;
    if (c.in.capacity() > kKeepBufferBytes) std::string().swap(c.in);
  } else if (c.in_pos > 0 && c.in_pos >= c.in.size() / 2) {
    c.in.erase(0, c.in_pos);
    c.in_pos = 0;
  }
}

Io Loop::Read(Connection& c) {
  Compact(c);
  if (c.ssl != nullptr) return ReadTls(c);
  // Level-triggered: after a short read the socket was drained, and epoll
  // reports new bytes; no recv() just to learn EAGAIN.
  if (!c.maybe_more) return Io::kWantRead;
  while (true) {
    const ssize_t n = ::recv(c.fd, buffer_.get(), kReadBytes, 0);
    if (n > 0) {
      c.in.append(buffer_.get(), static_cast<size_t>(n));
      c.maybe_more = static_cast<size_t>(n) == kReadBytes;
      return Io::kDone;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c.maybe_more = false;
      return Io::kWantRead;
    }
    // The peer closed (or reset) before sending a whole request.
    Close(c);
    return Io::kClosed;
  }
}

Io Loop::ReadTls(Connection& c) {
  // OpenSSL may hold decrypted bytes the socket no longer shows: read until
  // it asks for the socket again.
  ERR_clear_error();
  const int n = SSL_read(c.ssl, buffer_.get(), static_cast<int>(kReadBytes));
  if (n > 0) {
    c.in.append(buffer_.get(), static_cast<size_t>(n));
    return Io::kDone;
  }
  switch (SSL_get_error(c.ssl, n)) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    default:
      Close(c);
      return Io::kClosed;
  }
}

Io Loop::Flush(Connection& c) {
  if (c.ssl != nullptr) return FlushTls(c);
  while (c.out_pos < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_pos,
                             c.out.size() - c.out_pos, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_pos += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return Blocked(c, Io::kWantWrite);
    } else {
      Close(c);
      return Io::kClosed;
    }
  }
  c.out.clear();
  c.out_pos = 0;
  c.write_since_ms = 0;
  if (c.out.capacity() > kKeepBufferBytes) std::string().swap(c.out);
  return Io::kDone;
}

Io Loop::FlushTls(Connection& c) {
  while (c.out_pos < c.out.size()) {
    ERR_clear_error();
    const int n = SSL_write(
        c.ssl, c.out.data() + c.out_pos,
        static_cast<int>(std::min<size_t>(c.out.size() - c.out_pos, INT_MAX)));
    if (n > 0) {
      c.out_pos += static_cast<size_t>(n);
      continue;
    }
    switch (SSL_get_error(c.ssl, n)) {
      case SSL_ERROR_WANT_WRITE:
        return Blocked(c, Io::kWantWrite);
      case SSL_ERROR_WANT_READ:
        return Blocked(c, Io::kWantRead);
      default:
        Close(c);
        return Io::kClosed;
    }
  }
  c.out.clear();
  c.out_pos = 0;
  c.write_since_ms = 0;
  return Io::kDone;
}

// The answer is out: shut the write side (the peer sees the end of the
// answer) and read until the peer closes, so that bytes it still sends do
// not make the kernel reset the connection before the answer was read.
Io Loop::StartLinger(Connection& c) {
  if (c.ssl != nullptr) {
    ERR_clear_error();
    SSL_shutdown(c.ssl);  // close_notify, best effort
  }
  ::shutdown(c.fd, SHUT_WR);
  c.phase = Phase::kLinger;
  c.linger_until_ms = now_ms_ + linger_ms_;
  c.lingered = 0;
  return Linger(c);
}

Io Loop::Linger(Connection& c) {
  while (true) {
    const ssize_t n = ::recv(c.fd, buffer_.get(), kReadBytes, 0);
    if (n > 0) {
      c.lingered += static_cast<size_t>(n);
      if (c.lingered <= kMaxLingerBytes) continue;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return Io::kWantRead;
    }
    Close(c);
    return Io::kClosed;
  }
}

void Loop::Wait(Connection& c, Io io) {
  uint32_t events = 0;
  if (io == Io::kWantRead) events = EPOLLIN;
  if (io == Io::kWantWrite) events = EPOLLOUT;
  c.budget_blocked = io == Io::kBudget;
  if (!Watch(c, events)) return;
  UpdateDeadline(c);
}

bool Loop::Watch(Connection& c, uint32_t events) {
  if (c.in_epoll && c.events == events) return true;
  epoll_event event{};
  event.events = events;
  event.data.ptr = &c;
  if (::epoll_ctl(epoll_fd_, c.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd,
                  &event) != 0) {
    LogWarning("webhook connection dropped: cannot watch its socket",
               {{"error", strerror(errno)}});
    Close(c);
    return false;
  }
  c.in_epoll = true;
  c.events = events;
  return true;
}

void Loop::Close(Connection& c) {
  if (c.phase == Phase::kClosed) return;
  ReleaseBody(c);
  if (c.ssl != nullptr) SSL_free(c.ssl);
  c.ssl = nullptr;
  // Leave the epoll set explicitly: close() alone removes the registration
  // only when no other descriptor shares the socket, and a fork() elsewhere
  // in the process (its child holds copies until exec) would leave it armed
  // with a pointer this loop is about to free.
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  Connection* last = conns_.back();
  conns_[c.index] = last;
  last->index = c.index;
  conns_.pop_back();
  c.phase = Phase::kClosed;
  if (c.answer_pending) {
    orphans_.insert(&c);  // freed when its answer arrives (HandleInbox)
  } else {
    closed_.push_back(&c);
  }
  server_.Forget(c.peer);
}

void Loop::UpdateDeadline(Connection& c) {
  int64_t at = kNever;
  DeadlineKind kind = DeadlineKind::kNone;
  switch (c.phase) {
    case Phase::kHandshake:
      at = c.accepted_ms + request_ms_;
      kind = DeadlineKind::kRequest;
      break;
    case Phase::kIdle:
      if (c.ssl != nullptr && c.answered == 0) {
        at = c.accepted_ms + request_ms_;
        kind = DeadlineKind::kRequest;
      } else {
        at = c.idle_since_ms + idle_ms_;
        kind = DeadlineKind::kIdle;
      }
      break;
    case Phase::kHead:
    case Phase::kBody:
      at = c.request_start_ms + request_ms_;
      kind = DeadlineKind::kRequest;
      break;
    case Phase::kLinger:
      at = c.linger_until_ms;
      kind = DeadlineKind::kLinger;
      break;
    default:
      break;
  }
  if (c.write_since_ms != 0 && c.write_since_ms + write_ms_ < at) {
    at = c.write_since_ms + write_ms_;
    kind = DeadlineKind::kWrite;
  }
  c.deadline_ms = at;
  c.deadline = kind;
}

void Loop::Sweep() {
  next_sweep_ms_ = now_ms_ + sweep_ms_;
  for (size_t i = 0; i < conns_.size();) {
    Connection* c = conns_[i];
    if (c->deadline != DeadlineKind::kNone && c->deadline_ms <= now_ms_) {
      Expire(*c);
    } else if (c->budget_blocked) {
      c->budget_blocked = false;
      Drive(*c);  // its peer's share may have room again
    }
    // Close() moves the last connection into a closed one's place.
    if (i < conns_.size() && conns_[i] == c) ++i;
  }
}

void Loop::Expire(Connection& c) {
  switch (c.deadline) {
    case DeadlineKind::kIdle:
      server_.timeouts_idle_->Increment();
      break;
    case DeadlineKind::kWrite:
      server_.timeouts_write_->Increment();
      break;
    case DeadlineKind::kRequest:
      server_.timeouts_request_->Increment();
      if (c.phase == Phase::kHead || c.phase == Phase::kBody) {
        Refuse(c, 408,
               absl::StrCat("request not complete within ", request_ms_ / 1000,
                            " s"));
        Drive(c);
        return;
      }
      break;
    default:
      break;
  }
  Close(c);
}

void Loop::AcceptSome() {
  for (int i = 0; i < kAcceptsPerWake; ++i) {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&address),
                             &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      server_.OnAccepted(fd, &address, now_ms_, this);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
        errno == ENOMEM) {
      PauseAccepting();
    }
    return;
  }
}

// Out of descriptors: the pending connection stays in the backlog and the
// listening socket stays readable, so stop watching it for a while rather
// than spin.
void Loop::PauseAccepting() {
  const int error = errno;
  server_.refused_emfile_->Increment();
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  accept_resume_ms_ = now_ms_ + kAcceptPauseMs;
  if (now_ms_ - last_pause_log_ms_ >= 10000) {
    last_pause_log_ms_ = now_ms_;
    LogWarning("webhook server out of file descriptors: accepting paused",
               {{"error", strerror(error)},
                {"pause_ms", absl::StrCat(kAcceptPauseMs)}});
  }
}

void Loop::ResumeAccepting() {
  if (accept_resume_ms_ == 0 || now_ms_ < accept_resume_ms_) return;
  accept_resume_ms_ = 0;
  epoll_event listen{};
  listen.events = EPOLLIN | EPOLLEXCLUSIVE;
  listen.data.ptr = &kListenTag;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &listen);
}

void Loop::StopAcceptingHere() {
  draining_ = true;
  if (accept_resume_ms_ == 0) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  }
  accept_resume_ms_ = 0;
  for (size_t i = 0; i < conns_.size();) {
    Connection* c = conns_[i];
    if (c->phase == Phase::kParked || c->phase == Phase::kLinger) {
      ++i;
    } else if (c->out_pos < c->out.size()) {
      c->close_after_write = true;  // its answer goes out first
      ++i;
    } else {
      Close(*c);  // moves the last connection to i
    }
  }
}

}  // namespace event_http_internal

using event_http_internal::Loop;

void HttpResponder::Respond(HttpAnswer answer) const {
  if (event_http_internal::t_answering == connection_) {
    loop_->AnswerInline(*connection_, answer);
  } else {
    loop_->PostAnswer(connection_, std::move(answer));
  }
}

EventHttpServer::EventHttpServer(Options options)
    : options_(std::move(options)) {
  MetricsRegistry* metrics = options_.metrics;
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
    metrics = own_metrics_.get();
  }
  connections_gauge_ = metrics->GetGauge(
      "hoist_webhook_connections", "Open connections on the webhook port.");
  const std::string refused_help =
      "Connections to the webhook port closed at once, by reason.";
  refused_total_cap_ =
      metrics->GetCounter("hoist_webhook_connections_refused_total",
                          refused_help, {{"reason", "total_cap"}});
  refused_ip_cap_ =
      metrics->GetCounter("hoist_webhook_connections_refused_total",
                          refused_help, {{"reason", "ip_cap"}});
  refused_emfile_ =
      metrics->GetCounter("hoist_webhook_connections_refused_total",
                          refused_help, {{"reason", "emfile"}});
  const std::string timeouts_help =
      "Webhook connections closed by a deadline, by kind.";
  timeouts_request_ = metrics->GetCounter("hoist_webhook_timeouts_total",
                                          timeouts_help, {{"kind", "request"}});
  timeouts_idle_ = metrics->GetCounter("hoist_webhook_timeouts_total",
                                       timeouts_help, {{"kind", "idle"}});
  timeouts_write_ = metrics->GetCounter("hoist_webhook_timeouts_total",
                                        timeouts_help, {{"kind", "write"}});
}

absl::StatusOr<std::unique_ptr<EventHttpServer>> EventHttpServer::Start(
    Options options) {
  if (options.handler == nullptr) {
    return absl::InvalidArgumentError("EventHttpServer needs a handler");
  }
  event_http_internal::RaiseFileLimit();
  std::unique_ptr<EventHttpServer> server(
      new EventHttpServer(std::move(options)));
  const Options& o = server->options_;
  if (!o.tls_cert.empty() || !o.tls_key.empty()) {
    absl::StatusOr<SSL_CTX*> tls =
        event_http_internal::MakeTlsContext(o.tls_cert, o.tls_key);
    if (!tls.ok()) return tls.status();
    server->tls_ = *tls;
  }
  if (absl::Status listening = server->Listen(); !listening.ok()) {
    return listening;
  }
  for (int i = 0; i < std::max(o.event_threads, 1); ++i) {
    server->loops_.push_back(std::make_unique<Loop>(*server));
    if (absl::Status init = server->loops_.back()->Init(server->listen_fd_);
        !init.ok()) {
      return init;
    }
  }
  for (auto& loop : server->loops_) loop->StartThread();
  return server;
}

absl::Status EventHttpServer::Listen() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(options_.port);
  const std::string where = absl::StrCat(options_.host, ":", options_.port);
  if (const int error =
          getaddrinfo(options_.host.empty() ? nullptr : options_.host.c_str(),
                      port.c_str(), &hints, &found);
      error != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot resolve listen address ", where, ": ", gai_strerror(error)));
  }
  int last_error = 0;
  for (addrinfo* ai = found; ai != nullptr && listen_fd_ < 0;
       ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        ::listen(fd, options_.backlog) == 0) {
      listen_fd_ = fd;
    } else {
      last_error = errno;
      ::close(fd);
    }
  }
  freeaddrinfo(found);
  if (listen_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", where, ": ", strerror(last_error)));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length);
  port_ = ntohs(bound.ss_family == AF_INET6
                    ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                    : reinterpret_cast<sockaddr_in&>(bound).sin_port);
  return absl::OkStatus();
}

EventHttpServer::~EventHttpServer() {
  Stop();
  loops_.clear();
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

void EventHttpServer::StopAccepting() {
  absl::MutexLock lock(&stop_mu_);
  if (accepting_stopped_) return;
  accepting_stopped_ = true;
  int running = 0;
  for (auto& loop : loops_) running += loop->running() ? 1 : 0;
  if (running == 0) return;
  absl::BlockingCounter done(running);
  for (auto& loop : loops_) {
    if (loop->running()) loop->PostStopAccepting(&done);
  }
  done.Wait();
}

void EventHttpServer::Stop() {
  StopAccepting();
  absl::MutexLock lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  for (auto& loop : loops_) loop->Exit();
  // No loop watches it any more: connections are refused from now on.
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

void EventHttpServer::OnAccepted(int fd, const void* address, int64_t now_ms,
                                 Loop* accepting) {
  std::string peer;
  if (TracksPeers()) {
    peer = event_http_internal::PeerKey(
        *static_cast<const sockaddr_storage*>(address));
  }
  event_http_internal::PeerState* state = nullptr;
  if (!Admit(peer, &state)) {
    ::close(fd);
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Loop* loop =
      loops_[next_loop_.fetch_add(1, std::memory_order_relaxed) % loops_.size()]
          .get();
  if (loop == accepting) {
    loop->Register(fd, std::move(peer), state, now_ms);
  } else {
    loop->PostConnection(fd, std::move(peer), state, now_ms);
  }
}

bool EventHttpServer::Admit(const std::string& peer,
                            event_http_internal::PeerState** state) {
  if (open_.fetch_add(1) >= options_.max_connections) {
    open_.fetch_sub(1);
    refused_total_cap_->Increment();
    return false;
  }
  if (TracksPeers()) {
    absl::MutexLock lock(&peers_mu_);
    event_http_internal::PeerState& entry = per_peer_[peer];
    if (options_.max_connections_per_ip > 0 &&
        entry.connections >= options_.max_connections_per_ip) {
      open_.fetch_sub(1);
      refused_ip_cap_->Increment();
      return false;
    }
    ++entry.connections;
    *state = &entry;
  }
  connections_gauge_->Add(1);
  return true;
}

void EventHttpServer::Forget(const std::string& peer) {
  if (TracksPeers()) {
    absl::MutexLock lock(&peers_mu_);
    auto it = per_peer_.find(peer);
    if (it != per_peer_.end() && --it->second.connections <= 0) {
      per_peer_.erase(it);
    }
  }
  open_.fetch_sub(1);
  connections_gauge_->Add(-1);
}

bool EventHttpServer::Hold(int64_t bytes) {
  if (held_bytes_.fetch_add(bytes) + bytes >
      options_.max_unauthenticated_bytes) {
    held_bytes_.fetch_sub(bytes);
    return false;
  }
  return true;
}

void EventHttpServer::Release(int64_t bytes) { held_bytes_.fetch_sub(bytes); }

bool EventHttpServer::WouldPassHeldCap(uint64_t more) const {
  const uint64_t cap =
      static_cast<uint64_t>(options_.max_unauthenticated_bytes);
  return more > cap || static_cast<uint64_t>(held_bytes_.load()) + more > cap;
}

}  // namespace hoist::receiver
