#include "receiver/etcd_client_grpc.h"

#include <algorithm>
#include <map>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/tls.h"
#include "common/tsan.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace hoist::receiver {

struct EtcdEndpoints {
  struct Endpoint {
    std::string url;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  };
  std::vector<Endpoint> list;
  absl::Duration request_timeout;
  // The endpoint a call tries first: the last one that answered.
  std::atomic<size_t> preferred{0};
};

namespace {

using etcdserverpb::Compare;
using etcdserverpb::RequestOp;

// etcd's metadata asking a member to refuse a call at once (UNAVAILABLE
// "etcdserver: no leader") while it has no leader, and to end a watch
// stream when it loses it, instead of waiting
// (rpctypes.MetadataRequireLeaderKey).
constexpr char kRequireLeaderKey[] = "hasleader";

constexpr absl::Duration kFirstRoundBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxRoundBackoff = absl::Milliseconds(500);
constexpr absl::Duration kMaxWatchBackoff = absl::Seconds(1);

// Runs tasks at given times on one thread of its own, and drops references
// there. gRPC must not destroy a channel from inside one of its callbacks
// (grpc/grpc#37198, see receiver/agent_client_grpc.cc's ChannelReleaser):
// every reference to EtcdEndpoints that a watch holds is released here.
// Watches also reconnect from here, never from inside a gRPC callback.
class Scheduler {
 public:
  static Scheduler& Get() {
    // Leaked on purpose, with its thread: no destructor races a task at
    // process exit.
    static Scheduler* scheduler = new Scheduler();
    return *scheduler;
  }

  void At(absl::Time when, std::function<void()> task) {
    absl::MutexLock lock(&mu_);
    tasks_.emplace(when, std::move(task));
    ++generation_;
  }

  void Release(std::shared_ptr<EtcdEndpoints> endpoints) {
    if (endpoints == nullptr) return;
    At(absl::InfinitePast(), [e = std::move(endpoints)] {});
  }

 private:
  Scheduler() {
    std::thread([this] { Run(); }).detach();
  }

  void Run() {
    for (;;) {
      std::function<void()> task = Next();
      task();
      task = nullptr;  // drops what it holds, here
    }
  }

  std::function<void()> Next() {
    absl::MutexLock lock(&mu_);
    for (;;) {
      if (tasks_.empty()) {
        mu_.Await(absl::Condition(
            +[](std::multimap<absl::Time, std::function<void()>>* t) {
              return !t->empty();
            },
            &tasks_));
        continue;
      }
      auto first = tasks_.begin();
      if (first->first <= absl::Now()) {
        std::function<void()> task = std::move(first->second);
        tasks_.erase(first);
        return task;
      }
      // Until the first task is due or another one is added.
      const uint64_t seen = generation_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return generation_ != seen;
      };
      mu_.AwaitWithDeadline(absl::Condition(&changed), first->first);
    }
  }

  absl::Mutex mu_;
  std::multimap<absl::Time, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// A reference to the endpoints (and so their channels) that is released on
// the Scheduler's thread. Declared first in objects that gRPC may destroy
// on its threads, so that it goes after their ClientContext.
class EndpointsHold {
 public:
  explicit EndpointsHold(std::shared_ptr<EtcdEndpoints> endpoints)
      : endpoints_(std::move(endpoints)) {}
  ~EndpointsHold() { Scheduler::Get().Release(std::move(endpoints_)); }
  EndpointsHold(const EndpointsHold&) = delete;
  EndpointsHold& operator=(const EndpointsHold&) = delete;
  EtcdEndpoints& operator*() const { return *endpoints_; }
  EtcdEndpoints* operator->() const { return endpoints_.get(); }

 private:
  std::shared_ptr<EtcdEndpoints> endpoints_;
};

// ---- Conversions ----

EtcdKeyValue FromProto(const mvccpb::KeyValue& kv) {
  EtcdKeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

std::vector<EtcdKeyValue> FromProto(
    const google::protobuf::RepeatedPtrField<mvccpb::KeyValue>& kvs) {
  std::vector<EtcdKeyValue> out;
  out.reserve(kvs.size());
  for (const mvccpb::KeyValue& kv : kvs) out.push_back(FromProto(kv));
  return out;
}

Compare ToProto(const EtcdCompare& c) {
  Compare out;
  out.set_key(c.key);
  switch (c.result) {
    case EtcdCompare::Result::kEqual:
      out.set_result(Compare::EQUAL);
      break;
    case EtcdCompare::Result::kNotEqual:
      out.set_result(Compare::NOT_EQUAL);
      break;
    case EtcdCompare::Result::kGreater:
      out.set_result(Compare::GREATER);
      break;
    case EtcdCompare::Result::kLess:
      out.set_result(Compare::LESS);
      break;
  }
  switch (c.target) {
    case EtcdCompare::Target::kValue:
      out.set_target(Compare::VALUE);
      out.set_value(c.value);
      break;
    case EtcdCompare::Target::kCreateRevision:
      out.set_target(Compare::CREATE);
      out.set_create_revision(c.number);
      break;
    case EtcdCompare::Target::kModRevision:
      out.set_target(Compare::MOD);
      out.set_mod_revision(c.number);
      break;
    case EtcdCompare::Target::kVersion:
      out.set_target(Compare::VERSION);
      out.set_version(c.number);
      break;
    case EtcdCompare::Target::kLease:
      out.set_target(Compare::LEASE);
      out.set_lease(c.number);
      break;
  }
  return out;
}

RequestOp ToProto(const EtcdOp& op) {
  RequestOp out;
  switch (op.kind) {
    case EtcdOp::Kind::kPut: {
      etcdserverpb::PutRequest* put = out.mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      put->set_lease(op.lease);
      break;
    }
    case EtcdOp::Kind::kDelete: {
      etcdserverpb::DeleteRangeRequest* del =
          out.mutable_request_delete_range();
      del->set_key(op.key);
      del->set_range_end(op.range_end);
      break;
    }
    case EtcdOp::Kind::kGet: {
      etcdserverpb::RangeRequest* range = out.mutable_request_range();
      range->set_key(op.key);
      range->set_range_end(op.range_end);
      break;
    }
  }
  return out;
}

absl::Status CheckKey(const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("etcd: empty key");
  return absl::OkStatus();
}

absl::Status CheckOps(const std::vector<EtcdOp>& ops) {
  for (const EtcdOp& op : ops) {
    if (absl::Status s = CheckKey(op.key); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---- Unary calls over the endpoints in turn ----

// Whether a call may go to the next endpoint after a failed attempt
// (etcd_client_grpc.h, "Retries").
enum class Retry {
  kIdempotent,   // any UNAVAILABLE, or an attempt that timed out
  kUnlessTaken,  // unless the member said it took the request
};

bool ShouldTryNext(const grpc::Status& s, Retry retry, bool was_connected,
                   bool overall_deadline_passed) {
  if (overall_deadline_passed) return false;
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return retry == Retry::kIdempotent;
  }
  if (s.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  if (retry == Retry::kIdempotent || !was_connected) return true;
  // etcd's own UNAVAILABLE ("etcdserver: request timed out", "leader
  // changed") means the member took the request; "no leader" is refused
  // before. Anything else is the transport (a connection that broke).
  const std::string& m = s.error_message();
  return absl::StrContains(m, "no leader") ||
         !absl::StartsWith(m, "etcdserver:");
}

// The caller's status for a failed call (etcd_client.h, "Errors"): etcd's
// codes pass through (gRPC and absl codes match); a deadline becomes
// UNAVAILABLE naming the timeout.
absl::Status ToStatus(const grpc::Status& s, absl::string_view what,
                      const std::string& endpoint, absl::Duration timeout) {
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(absl::StrCat(
        "etcd ", what, ": no answer within ", absl::FormatDuration(timeout),
        " (last tried ", endpoint, ": ", s.error_message(), ")"));
  }
  return absl::Status(
      static_cast<absl::StatusCode>(s.error_code()),
      absl::StrCat("etcd ", what, " (", endpoint, "): ", s.error_message()));
}

void PrepareContext(grpc::ClientContext* context, absl::Time deadline) {
  context->set_deadline(absl::ToChronoTime(deadline));
  context->set_wait_for_ready(false);
  context->AddMetadata(kRequireLeaderKey, "true");
}

template <typename Response>
using Rpc = std::function<grpc::Status(EtcdEndpoints::Endpoint&,
                                       grpc::ClientContext*, Response*)>;

// Runs `rpc` on the endpoints in turn until one answers, it fails with an
// error that another endpoint would not change, or request_timeout passed.
template <typename Response>
absl::StatusOr<Response> CallEndpoints(EtcdEndpoints& eps,
                                       absl::string_view what, Retry retry,
                                       const Rpc<Response>& rpc) {
  const absl::Time deadline = absl::Now() + eps.request_timeout;
  const size_t n = eps.list.size();
  const size_t start = eps.preferred.load();
  absl::Duration backoff = kFirstRoundBackoff;
  for (size_t attempt = 0;; ++attempt) {
    if (attempt > 0 && attempt % n == 0) {  // a whole round failed
      absl::SleepFor(std::min(backoff, deadline - absl::Now()));
      backoff = std::min(backoff * 2, kMaxRoundBackoff);
    }
    const size_t i = (start + attempt) % n;
    EtcdEndpoints::Endpoint& ep = eps.list[i];
    const bool was_connected =
        ep.channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY;
    // A paused member would hold an idempotent call to the end; a third of
    // the timeout leaves the others time to answer.
    const absl::Time attempt_deadline =
        retry == Retry::kIdempotent
            ? std::min(deadline, absl::Now() + eps.request_timeout / 3)
            : deadline;
    grpc::ClientContext context;
    PrepareContext(&context, attempt_deadline);
    Response response;
    grpc::Status s = rpc(ep, &context, &response);
    if (s.ok()) {
      eps.preferred.store(i);
      return response;
    }
    size_t expected = i;  // the next call starts elsewhere
    eps.preferred.compare_exchange_strong(expected, (i + 1) % n);
    if (!ShouldTryNext(s, retry, was_connected, absl::Now() >= deadline)) {
      return ToStatus(s, what, ep.url, eps.request_timeout);
    }
  }
}

// ---- Watch ----

class WatchStream;

// What a watch stream does after a response.
struct StreamVerdict {
  enum class Kind { kRead, kResume, kEnd };
  Kind kind = Kind::kRead;
  absl::Status end_status;  // for kEnd
};

// The state of one Watch() across the streams that serve it in turn. Owned
// by the handle, the current stream and a scheduled reconnect.
class WatchState : public std::enable_shared_from_this<WatchState> {
 public:
  WatchState(std::shared_ptr<EtcdEndpoints> endpoints, std::string key,
             std::string range_end, int64_t start_revision,
             EtcdEventsCallback on_events, EtcdDoneCallback on_done)
      : endpoints_(std::move(endpoints)),
        key_(std::move(key)),
        range_end_(std::move(range_end)),
        on_events_(std::move(on_events)),
        on_done_(std::move(on_done)),
        next_revision_(start_revision),
        endpoint_(endpoints_->preferred.load()) {}

  // Opens a stream to the current endpoint (unless the watch ended).
  void Open();
  void Cancel();
  // Called by the current stream.
  StreamVerdict OnResponse(const etcdserverpb::WatchResponse& response);
  void OnStreamDone(const grpc::Status& status, const StreamVerdict& verdict);
  // Ends the watch with `status` (on_done), unless it ended already.
  void End(absl::Status status);

 private:
  bool Deliver(const std::vector<EtcdWatchEvent>& events, int64_t revision);
  void ScheduleReconnect(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  EndpointsHold endpoints_;
  const std::string key_;
  const std::string range_end_;
  const EtcdEventsCallback on_events_;
  const EtcdDoneCallback on_done_;

  absl::Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  // The thread running a callback of this watch, if one is.
  std::thread::id delivering_ ABSL_GUARDED_BY(mu_);
  // The first revision not yet delivered; 0 = "from now" until a stream
  // was created.
  int64_t next_revision_ ABSL_GUARDED_BY(mu_);
  size_t endpoint_ ABSL_GUARDED_BY(mu_);
  std::weak_ptr<WatchStream> stream_ ABSL_GUARDED_BY(mu_);
  // Since when no stream serves the watch (InfiniteFuture while one does).
  absl::Time lost_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

// One Watch stream to one member, through the callback API. Owns itself
// (self_) from Start() until OnDone; the WatchState holds it weakly, to
// cancel it.
class WatchStream : public grpc::ClientBidiReactor<etcdserverpb::WatchRequest,
                                                   etcdserverpb::WatchResponse>,
                    public std::enable_shared_from_this<WatchStream> {
 public:
  explicit WatchStream(std::shared_ptr<WatchState> state)
      : state_(std::move(state)) {
    // No deadline: open until cancelled; keepalive pings find a dead peer.
    context_.set_wait_for_ready(false);
    context_.AddMetadata(kRequireLeaderKey, "true");
  }

  void Start(etcdserverpb::Watch::Stub* stub,
             const etcdserverpb::WatchRequest& request) {
    request_ = request;
    self_ = shared_from_this();
    stub->async()->Watch(&context_, this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }

  void TryCancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status
    verdict_ = state_->OnResponse(response_);
    if (verdict_.kind == StreamVerdict::Kind::kRead) {
      StartRead(&response_);
    } else {
      context_.TryCancel();
    }
  }

  void OnDone(const grpc::Status& status) override {
    TsanClientOnDoneEntry(
        static_cast<grpc::ClientBidiReactor<etcdserverpb::WatchRequest,
                                            etcdserverpb::WatchResponse>*>(
            this));
    std::shared_ptr<WatchState> state = state_;
    StreamVerdict verdict = verdict_;
    std::shared_ptr<WatchStream> self = std::move(self_);
    self.reset();  // may destroy this
    state->OnStreamDone(status, verdict);
  }

 private:
  // Before context_, so destroyed after it: the state holds the endpoints
  // (and so the channel) and releases them off gRPC's threads.
  std::shared_ptr<WatchState> state_;
  grpc::ClientContext context_;
  etcdserverpb::WatchRequest request_;
  etcdserverpb::WatchResponse response_;
  StreamVerdict verdict_;
  std::shared_ptr<WatchStream> self_;
};

void WatchState::Open() {
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(key_);
  create->set_range_end(range_end_);
  std::shared_ptr<WatchStream> stream;
  etcdserverpb::Watch::Stub* stub = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    create->set_start_revision(next_revision_);
    auto& ep = endpoints_->list[endpoint_ % endpoints_->list.size()];
    stub = ep.watch.get();
    stream = std::make_shared<WatchStream>(shared_from_this());
    stream_ = stream;
  }
  stream->Start(stub, request);
}

StreamVerdict WatchState::OnResponse(
    const etcdserverpb::WatchResponse& response) {
  if (response.compact_revision() > 0) {
    return {StreamVerdict::Kind::kEnd,
            absl::OutOfRangeError(absl::StrCat("etcd watch: revision ",
                                               response.compact_revision() - 1,
                                               " and older were compacted"))};
  }
  if (response.canceled()) {  // e.g. the member lost its leader
    return {StreamVerdict::Kind::kResume, absl::OkStatus()};
  }
  std::vector<EtcdWatchEvent> events;
  {
    absl::MutexLock lock(&mu_);
    if (response.created()) {
      if (next_revision_ == 0) {
        next_revision_ = response.header().revision() + 1;
      }
      lost_since_ = absl::InfiniteFuture();
      backoff_ = absl::ZeroDuration();
    }
    for (const mvccpb::Event& e : response.events()) {
      // A resumed stream starts at next_revision_; nothing older is new.
      if (e.kv().mod_revision() < next_revision_) continue;
      EtcdWatchEvent event;
      event.type = e.type() == mvccpb::Event::DELETE
                       ? EtcdWatchEvent::Type::kDelete
                       : EtcdWatchEvent::Type::kPut;
      event.kv = FromProto(e.kv());
      events.push_back(std::move(event));
    }
    if (!events.empty()) next_revision_ = events.back().kv.mod_revision + 1;
  }
  if (!events.empty() && !Deliver(events, response.header().revision())) {
    return {StreamVerdict::Kind::kEnd, absl::CancelledError()};
  }
  return {};
}

bool WatchState::Deliver(const std::vector<EtcdWatchEvent>& events,
                         int64_t revision) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return false;
    delivering_ = std::this_thread::get_id();
  }
  on_events_(events, revision);
  absl::MutexLock lock(&mu_);
  delivering_ = std::thread::id();
  return true;
}

void WatchState::End(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    ended_ = true;
    delivering_ = std::this_thread::get_id();
  }
  if (on_done_) on_done_(std::move(status));
  absl::MutexLock lock(&mu_);
  delivering_ = std::thread::id();
}

void WatchState::Cancel() {
  std::shared_ptr<WatchStream> stream;
  bool deliver_done = false;
  {
    absl::MutexLock lock(&mu_);
    deliver_done = !ended_;
    ended_ = true;
    stream = stream_.lock();
    // Wait for a callback running on another thread; never for one running
    // on this thread (Cancel from inside a callback).
    const std::thread::id me = std::this_thread::get_id();
    auto idle = [this, me]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return delivering_ == std::thread::id() || delivering_ == me;
    };
    mu_.Await(absl::Condition(&idle));
  }
  // Outside mu_: gRPC may run OnDone inline.
  if (stream != nullptr) stream->TryCancel();
  if (deliver_done && on_done_) {
    on_done_(absl::CancelledError("etcd watch cancelled"));
  }
}

void WatchState::OnStreamDone(const grpc::Status& status,
                              const StreamVerdict& verdict) {
  if (verdict.kind == StreamVerdict::Kind::kEnd) {
    End(verdict.end_status);
    return;
  }
  const grpc::StatusCode code = status.error_code();
  const bool retryable = verdict.kind == StreamVerdict::Kind::kResume ||
                         code == grpc::StatusCode::UNAVAILABLE ||
                         code == grpc::StatusCode::DEADLINE_EXCEEDED ||
                         code == grpc::StatusCode::CANCELLED ||
                         code == grpc::StatusCode::OK;
  if (!retryable) {
    End(ToStatus(status, "watch", "", endpoints_->request_timeout));
    return;
  }
  absl::MutexLock lock(&mu_);
  if (ended_) return;
  ScheduleReconnect(status);
}

void WatchState::ScheduleReconnect(const grpc::Status& status) {
  const absl::Time now = absl::Now();
  if (lost_since_ == absl::InfiniteFuture()) lost_since_ = now;
  if (now - lost_since_ > endpoints_->request_timeout) {
    // End() takes mu_; hand it to the scheduler's thread.
    absl::Status unavailable = absl::UnavailableError(
        absl::StrCat("etcd watch: no member served it for ",
                     absl::FormatDuration(endpoints_->request_timeout),
                     " (last: ", status.error_message(), ")"));
    Scheduler::Get().At(
        absl::InfinitePast(),
        [self = shared_from_this(), unavailable] { self->End(unavailable); });
    return;
  }
  ++endpoint_;  // the next member
  const absl::Time when = now + backoff_;
  backoff_ =
      std::min(std::max(backoff_ * 2, kFirstRoundBackoff), kMaxWatchBackoff);
  Scheduler::Get().At(when, [self = shared_from_this()] { self->Open(); });
}

class WatchHandle : public EtcdWatch {
 public:
  explicit WatchHandle(std::shared_ptr<WatchState> state)
      : state_(std::move(state)) {}
  ~WatchHandle() override { state_->Cancel(); }
  void Cancel() override { state_->Cancel(); }

 private:
  std::shared_ptr<WatchState> state_;
};

// ---- Construction ----

struct ParsedEndpoints {
  bool tls = false;
  std::vector<std::pair<std::string, std::string>> targets;  // url, host:port
};

absl::StatusOr<ParsedEndpoints> ParseEndpoints(
    const std::vector<std::string>& urls) {
  if (urls.empty()) return absl::InvalidArgumentError("etcd: no endpoints");
  ParsedEndpoints out;
  for (size_t i = 0; i < urls.size(); ++i) {
    const std::string& url = urls[i];
    const bool https = absl::StartsWith(url, "https://");
    if (!https && !absl::StartsWith(url, "http://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint ", url, ": not http://host:port or https://"));
    }
    if (i > 0 && https != out.tls) {
      return absl::InvalidArgumentError(
          "etcd endpoints: all http:// or all https://");
    }
    out.tls = https;
    std::string target = url.substr(https ? 8 : 7);
    if (!target.empty() && target.back() == '/') target.pop_back();
    const size_t colon = target.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(target.substr(colon + 1), &port) || port <= 0 ||
        port > 65535 || target.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint ", url, ": not scheme://host:port"));
    }
    out.targets.emplace_back(url, target);
  }
  return out;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const EtcdClientOptions& options, bool tls) {
  const bool any = !options.ca_file.empty() || !options.cert_file.empty() ||
                   !options.key_file.empty();
  if (!tls) {
    if (any) {
      return absl::InvalidArgumentError(
          "etcd: TLS files given for http:// endpoints");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.ca_file.empty() || options.cert_file.empty() ||
      options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "etcd: https:// endpoints need tls ca, cert and key");
  }
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(
      TlsFiles{options.ca_file, options.cert_file, options.key_file});
  if (!material.ok()) return material.status();
  return MutualTlsChannelCredentials(*material);
}

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  // DESIGN decision 14: reconnect with backoff of at most 2 s; a refused
  // connection is retried after 100 ms first. A connection attempt gives up
  // after 1 s (gRPC takes the minimum backoff as the minimum connect
  // deadline), so an unreachable host does not hold calls to the others.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Pings while a call (a watch) is open find a paused or cut-off member
  // within 13 s. etcd refuses pings more often than every 5 s
  // (--grpc-keepalive-min-time) and pings without calls.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // One connection per endpoint even if two resolve alike.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 * 1024 * 1024);
  return args;
}

}  // namespace

absl::StatusOr<bool> EtcdEndpointsUseTls(
    const std::vector<std::string>& endpoints) {
  absl::StatusOr<ParsedEndpoints> parsed = ParseEndpoints(endpoints);
  if (!parsed.ok()) return parsed.status();
  return parsed->tls;
}

absl::Status CheckEtcdTlsFiles(const EtcdClientOptions& options, bool tls) {
  return Credentials(options, tls).status();
}

absl::StatusOr<std::unique_ptr<EtcdClientGrpc>> EtcdClientGrpc::Create(
    const EtcdClientOptions& options) {
  absl::StatusOr<ParsedEndpoints> parsed = ParseEndpoints(options.endpoints);
  if (!parsed.ok()) return parsed.status();
  if (options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd: request_timeout must be > 0");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      Credentials(options, parsed->tls);
  if (!credentials.ok()) return credentials.status();
  auto endpoints = std::make_shared<EtcdEndpoints>();
  endpoints->request_timeout = options.request_timeout;
  const grpc::ChannelArguments args = ChannelArgs();
  for (const auto& [url, target] : parsed->targets) {
    EtcdEndpoints::Endpoint ep;
    ep.url = url;
    ep.channel = grpc::CreateCustomChannel(target, *credentials, args);
    ep.kv = etcdserverpb::KV::NewStub(ep.channel);
    ep.lease = etcdserverpb::Lease::NewStub(ep.channel);
    ep.watch = etcdserverpb::Watch::NewStub(ep.channel);
    endpoints->list.push_back(std::move(ep));
  }
  return std::unique_ptr<EtcdClientGrpc>(
      new EtcdClientGrpc(std::move(endpoints)));
}

EtcdClientGrpc::EtcdClientGrpc(std::shared_ptr<EtcdEndpoints> endpoints)
    : endpoints_(std::move(endpoints)) {}

EtcdClientGrpc::~EtcdClientGrpc() {
  Scheduler::Get().Release(std::move(endpoints_));
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdClientGrpc::Get(
    const std::string& key, const std::string& range_end, int64_t limit) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  request.set_range_end(range_end);
  request.set_limit(limit);
  absl::StatusOr<etcdserverpb::RangeResponse> response =
      CallEndpoints<etcdserverpb::RangeResponse>(
          *endpoints_, "get", Retry::kIdempotent,
          [&](EtcdEndpoints::Endpoint& ep, grpc::ClientContext* context,
              etcdserverpb::RangeResponse* out) {
            return ep.kv->Range(context, request, out);
          });
  if (!response.ok()) return response.status();
  return FromProto(response->kvs());
}

absl::StatusOr<int64_t> EtcdClientGrpc::Put(const std::string& key,
                                            const std::string& value,
                                            int64_t lease) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  absl::StatusOr<etcdserverpb::PutResponse> response =
      CallEndpoints<etcdserverpb::PutResponse>(
          *endpoints_, "put", Retry::kUnlessTaken,
          [&](EtcdEndpoints::Endpoint& ep, grpc::ClientContext* context,
              etcdserverpb::PutResponse* out) {
            return ep.kv->Put(context, request, out);
          });
  if (!response.ok()) return response.status();
  return response->header().revision();
}

absl::StatusOr<int64_t> EtcdClientGrpc::Delete(const std::string& key,
                                               const std::string& range_end) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  request.set_range_end(range_end);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> response =
      CallEndpoints<etcdserverpb::DeleteRangeResponse>(
          *endpoints_, "delete", Retry::kUnlessTaken,
          [&](EtcdEndpoints::Endpoint& ep, grpc::ClientContext* context,
              etcdserverpb::DeleteRangeResponse* out) {
            return ep.kv->DeleteRange(context, request, out);
          });
  if (!response.ok()) return response.status();
  return response->deleted();
}

absl::StatusOr<EtcdTxnResult> EtcdClientGrpc::Txn(
    const std::vector<EtcdCompare>& compares,
    const std::vector<EtcdOp>& success, const std::vector<EtcdOp>& failure) {
  if (absl::Status s = CheckOps(success); !s.ok()) return s;
  if (absl::Status s = CheckOps(failure); !s.ok()) return s;
  etcdserverpb::TxnRequest request;
  for (const EtcdCompare& c : compares) *request.add_compare() = ToProto(c);
  for (const EtcdOp& op : success) *request.add_success() = ToProto(op);
  for (const EtcdOp& op : failure) *request.add_failure() = ToProto(op);
  absl::StatusOr<etcdserverpb::TxnResponse> response =
      CallEndpoints<etcdserverpb::TxnResponse>(
          *endpoints_, "txn", Retry::kUnlessTaken,
          [&](EtcdEndpoints::Endpoint& ep, grpc::ClientContext* context,
              etcdserverpb::TxnResponse* out) {
            return ep.kv->Txn(context, request, out);
          });
  if (!response.ok()) return response.status();
  EtcdTxnResult result;
  result.succeeded = response->succeeded();
  result.revision = response->header().revision();
  for (const etcdserverpb::ResponseOp& op : response->responses()) {
    if (op.has_response_range()) {
      result.gets.push_back(FromProto(op.response_range().kvs()));
    }
  }
  return result;
}

absl::StatusOr<int64_t> EtcdClientGrpc::GrantLease(int64_t ttl_seconds) {
  if (ttl_seconds < 1) {
    return absl::InvalidArgumentError("etcd: lease ttl must be >= 1 s");
  }
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  // Idempotent enough: a lease granted twice leaves one unused that expires.
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> response =
      CallEndpoints<etcdserverpb::LeaseGrantResponse>(
          *endpoints_, "grant lease", Retry::kIdempotent,
          [&](EtcdEndpoints::Endpoint& ep, grpc::ClientContext* context,
              etcdserverpb::LeaseGrantResponse* out) {
            return ep.lease->LeaseGrant(context, request, out);
          });
  if (!response.ok()) return response.status();
  if (!response->error().empty()) {
    return absl::InternalError(
        absl::StrCat("etcd grant lease: ", response->error()));
  }
  return response->id();
}

absl::StatusOr<int64_t> EtcdClientGrpc::KeepAliveOnce(int64_t lease) {
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> response =
      CallEndpoints<etcdserverpb::LeaseKeepAliveResponse>(
          *endpoints_, "keep-alive", Retry::kIdempotent,
          [&](EtcdEndpoints::Endpoint& ep, grpc::ClientContext* context,
              etcdserverpb::LeaseKeepAliveResponse* out) {
            auto stream = ep.lease->LeaseKeepAlive(context);
            const bool answered = stream->Write(request) &&
                                  stream->WritesDone() && stream->Read(out);
            grpc::Status s = stream->Finish();
            if (s.ok() && !answered) {
              return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  "keep-alive stream ended without answer");
            }
            return s;
          });
  if (!response.ok()) return response.status();
  if (response->ttl() <= 0) {
    return absl::NotFoundError(
        absl::StrCat("etcd keep-alive: lease ", lease, " not found"));
  }
  return response->ttl();
}

absl::Status EtcdClientGrpc::RevokeLease(int64_t lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  return CallEndpoints<etcdserverpb::LeaseRevokeResponse>(
             *endpoints_, "revoke lease", Retry::kIdempotent,
             [&](EtcdEndpoints::Endpoint& ep, grpc::ClientContext* context,
                 etcdserverpb::LeaseRevokeResponse* out) {
               return ep.lease->LeaseRevoke(context, request, out);
             })
      .status();
}

std::unique_ptr<EtcdWatch> EtcdClientGrpc::Watch(const std::string& key,
                                                 const std::string& range_end,
                                                 int64_t start_revision,
                                                 EtcdEventsCallback on_events,
                                                 EtcdDoneCallback on_done) {
  auto state =
      std::make_shared<WatchState>(endpoints_, key, range_end, start_revision,
                                   std::move(on_events), std::move(on_done));
  if (key.empty()) {
    state->End(absl::InvalidArgumentError("etcd watch: empty key"));
  } else {
    state->Open();
  }
  return std::make_unique<WatchHandle>(std::move(state));
}

}  // namespace hoist::receiver
