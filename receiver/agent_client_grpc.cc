#include "receiver/agent_client_grpc.h"

#include <cstdlib>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/tsan.h"

namespace hoist::receiver {
namespace {

// Largest TLS record the receiver writes to an agent (gRPC's default and
// upper bound is 16 KiB, its lower bound 1 KiB).
constexpr int kTsiMaxFrameSize = 4096;

// Drops channel references on a thread of its own. gRPC must not destroy a
// channel from inside one of its callbacks: the last reference dropped on a
// callback thread (a call that outlived its AgentClientGrpc) tripped a
// reference-count assertion in libgrpc (grpc/grpc#37198). Every call holds
// its channel through a ChannelHold, and ~AgentClientGrpc hands its own
// reference over too, so no reference is ever dropped on a gRPC thread.
//
// At process exit it finishes the batch it is destroying and destroys no
// more: exit's static destructors (gRPC's among them) must not run while a
// channel is being torn down on this thread, which corrupted the heap of a
// test process that released a channel just before returning from main.
class ChannelReleaser {
 public:
  static ChannelReleaser& Get() {
    // Leaked on purpose, with its thread: no destructor races a release at
    // process exit.
    static ChannelReleaser* releaser = [] {
      auto* r = new ChannelReleaser();
      std::atexit(+[] { Get().StopForExit(); });
      return r;
    }();
    return *releaser;
  }

  void Release(std::shared_ptr<grpc::Channel> channel) {
    if (channel == nullptr) return;
    absl::MutexLock lock(&mu_);
    pending_.push_back(std::move(channel));
  }

 private:
  ChannelReleaser() {
    std::thread([this] { Run(); }).detach();
  }

  // Waits for the batch being destroyed; what is released later is leaked.
  void StopForExit() {
    absl::MutexLock lock(&mu_);
    exiting_ = true;
    mu_.Await(absl::Condition(
        +[](bool* releasing) { return !*releasing; }, &releasing_));
  }

  void Run() {
    for (;;) {
      std::vector<std::shared_ptr<grpc::Channel>> batch;
      {
        absl::MutexLock lock(&mu_);
        auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !pending_.empty() && !exiting_;
        };
        mu_.Await(absl::Condition(&work));
        batch.swap(pending_);
        releasing_ = true;
      }
      batch.clear();  // may destroy channels, here and not on a gRPC thread
      absl::MutexLock lock(&mu_);
      releasing_ = false;
    }
  }

  absl::Mutex mu_;
  std::vector<std::shared_ptr<grpc::Channel>> pending_ ABSL_GUARDED_BY(mu_);
  bool exiting_ ABSL_GUARDED_BY(mu_) = false;
  bool releasing_ ABSL_GUARDED_BY(mu_) = false;  // a batch is being destroyed
};

// A call's reference to its channel. Declared as a call object's first
// member, so that it is destroyed after the ClientContext (which holds a
// reference of its own); it passes the reference to the ChannelReleaser.
class ChannelHold {
 public:
  explicit ChannelHold(std::shared_ptr<grpc::Channel> channel)
      : channel_(std::move(channel)) {}
  ~ChannelHold() { ChannelReleaser::Get().Release(std::move(channel_)); }
  ChannelHold(const ChannelHold&) = delete;
  ChannelHold& operator=(const ChannelHold&) = delete;

 private:
  std::shared_ptr<grpc::Channel> channel_;
};

// Reads one server stream through the callback API and reports into the
// caller's callbacks. Deletes itself when the call is done.
template <typename Request>
class EventReader : public grpc::ClientReadReactor<hoist::v1::DeployEvent> {
 public:
  EventReader(std::shared_ptr<grpc::Channel> channel,
              DeployEventCallback on_event, DoneCallback on_done,
              absl::Duration deadline)
      : channel_(std::move(channel)),
        on_event_(std::move(on_event)),
        on_done_(std::move(on_done)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    context_.set_wait_for_ready(false);
  }

  grpc::ClientContext* context() { return &context_; }
  Request* request() { return &request_; }

  void Begin() {
    StartRead(&event_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the final status
    if (on_event_) on_event_(event_);
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    TsanClientOnDoneEntry(
        static_cast<grpc::ClientReadReactor<hoist::v1::DeployEvent>*>(this));
    DoneCallback done = std::move(on_done_);
    absl::Status s = FromGrpcStatus(status);
    delete this;
    if (done) done(std::move(s));
  }

 private:
  ChannelHold channel_;  // first, so destroyed last
  grpc::ClientContext context_;
  Request request_;
  hoist::v1::DeployEvent event_;
  DeployEventCallback on_event_;
  DoneCallback on_done_;
};

// Reads one WatchContainers stream through the callback API. It owns itself
// (self_) from Start() until OnDone; a WatchHandle holds it only for the
// length of a Cancel(), so that a cancel racing with the end of the call
// never touches freed memory.
class ContainersWatch
    : public grpc::ClientReadReactor<hoist::v1::ContainersEvent>,
      public std::enable_shared_from_this<ContainersWatch> {
 public:
  ContainersWatch(std::shared_ptr<grpc::Channel> channel,
                  ContainersEventCallback on_event, DoneCallback on_done)
      : channel_(std::move(channel)),
        on_event_(std::move(on_event)),
        on_done_(std::move(on_done)) {
    // No deadline: the stream is open until cancelled (agent_client.h).
    context_.set_wait_for_ready(false);
  }

  void Start(hoist::v1::NodeAgent::Stub* stub,
             const hoist::v1::WatchContainersRequest& request) {
    request_ = request;
    self_ = shared_from_this();
    stub->async()->WatchContainers(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  // Safe before, during and after the call's end (the ClientContext keeps
  // its call until it is destroyed, which our owners delay past this).
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the final status
    if (on_event_) on_event_(event_);
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    TsanClientOnDoneEntry(
        static_cast<grpc::ClientReadReactor<hoist::v1::ContainersEvent>*>(
            this));
    DoneCallback done = std::move(on_done_);
    absl::Status s = FromGrpcStatus(status);
    // May destroy this (unless a Cancel() holds it right now).
    std::shared_ptr<ContainersWatch> self = std::move(self_);
    self.reset();
    if (done) done(std::move(s));
  }

 private:
  ChannelHold channel_;  // first, so destroyed last

  grpc::ClientContext context_;
  hoist::v1::WatchContainersRequest request_;
  hoist::v1::ContainersEvent event_;
  ContainersEventCallback on_event_;
  DoneCallback on_done_;
  std::shared_ptr<ContainersWatch> self_;
};

class WatchHandle : public StreamHandle {
 public:
  explicit WatchHandle(std::weak_ptr<ContainersWatch> watch)
      : watch_(std::move(watch)) {}
  void Cancel() override {
    if (std::shared_ptr<ContainersWatch> watch = watch_.lock()) {
      watch->Cancel();
    }
  }

 private:
  std::weak_ptr<ContainersWatch> watch_;
};

}  // namespace

std::string AgentTlsName(const AgentEntry& agent) {
  if (!agent.tls_name.empty()) return agent.tls_name;
  const std::string& a = agent.address;
  if (!a.empty() && a[0] == '[') {
    size_t end = a.find(']');
    return end == std::string::npos ? a : a.substr(1, end - 1);
  }
  size_t colon = a.rfind(':');
  return colon == std::string::npos ? a : a.substr(0, colon);
}

std::shared_ptr<grpc::ChannelCredentials> AgentChannelCredentials(
    const TlsMaterial& tls) {
  return MutualTlsChannelCredentialsForUri(tls, kAgentIdentity);
}

AgentClientGrpc::AgentClientGrpc(
    const AgentEntry& agent,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const AgentCallConfig& call)
    : name_(agent.name), tls_name_(AgentTlsName(agent)) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(tls_name_);
  // A connection attempt gives up after connect_timeout_seconds (gRPC uses
  // the minimum reconnect backoff as its minimum connect deadline).
  const int connect_ms = static_cast<int>(
      std::max<int64_t>(call.connect_timeout_seconds, 1) * 1000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, connect_ms);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
  // Keepalive (docs/design.md, "Second-wave decisions" 11): a ping every
  // 10 s, answered within 5 s, also while no call is open, so that an agent
  // that went silent ends its WatchContainers stream (and is shown
  // unreachable) within about 15 s. The watch stream is idle most of the
  // time, so pings are not capped by data sent (gRPC's default stops after
  // two pings without data). Agents' servers must accept pings this often.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 10 * 1000);
  // Each agent gets its own connection even when two share an address.
  args.SetString("hoist.agent", agent.name);
  // Memory per connected agent (measured with heaptrack at 1000 agents, see
  // docs/scaling.md). The TLS frame protector allocates one output buffer of
  // the maximum frame size per connection: 4 KiB instead of 16 KiB is plenty
  // for DeployEvents and saves 12 KB per agent.
  args.SetInt(GRPC_ARG_TSI_MAX_FRAME_SIZE, kTsiMaxFrameSize);
  // gRPC's own retries buffer every call's messages in the retry filter and
  // make each call's arena larger; the rollout executor already retries
  // UNAVAILABLE with the same deploy id (the agent attaches), so they add
  // nothing here.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  // No channelz node (and its trace buffer) per channel and subchannel.
  args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
  // No bandwidth-delay-product probing: with it, chttp2 answers received
  // data with PING frames (and the agent with PING acks), re-arms a timer per
  // ack and sends window updates as its estimate grows; one more write, read
  // and wakeup per few DeployEvents, for streams of small messages that never
  // come near the default 64 KiB window.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  channel_ = grpc::CreateCustomChannel(agent.address, credentials, args);
  stub_ = hoist::v1::NodeAgent::NewStub(channel_);
}

AgentClientGrpc::~AgentClientGrpc() {
  stub_.reset();  // holds a reference too
  ChannelReleaser::Get().Release(std::move(channel_));
}

void AgentClientGrpc::Deploy(const hoist::v1::DeployRequest& request,
                             absl::Duration deadline,
                             DeployEventCallback on_event,
                             DoneCallback on_done) {
  auto* reader = new EventReader<hoist::v1::DeployRequest>(
      channel_, std::move(on_event), std::move(on_done), deadline);
  *reader->request() = request;
  stub_->async()->Deploy(reader->context(), reader->request(), reader);
  reader->Begin();
}

void AgentClientGrpc::Rollback(const hoist::v1::RollbackRequest& request,
                               absl::Duration deadline,
                               DeployEventCallback on_event,
                               DoneCallback on_done) {
  auto* reader = new EventReader<hoist::v1::RollbackRequest>(
      channel_, std::move(on_event), std::move(on_done), deadline);
  *reader->request() = request;
  stub_->async()->Rollback(reader->context(), reader->request(), reader);
  reader->Begin();
}

void AgentClientGrpc::WatchDeploy(const std::string& deploy_id,
                                  absl::Duration deadline,
                                  DeployEventCallback on_event,
                                  DoneCallback on_done) {
  auto* reader = new EventReader<hoist::v1::WatchDeployRequest>(
      channel_, std::move(on_event), std::move(on_done), deadline);
  reader->request()->set_deploy_id(deploy_id);
  stub_->async()->WatchDeploy(reader->context(), reader->request(), reader);
  reader->Begin();
}

absl::StatusOr<hoist::v1::AgentStatus> AgentClientGrpc::GetStatus(
    absl::Duration deadline) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  context.set_wait_for_ready(false);
  hoist::v1::GetStatusRequest request;
  hoist::v1::AgentStatus status;
  grpc::Status s = stub_->GetStatus(&context, request, &status);
  if (!s.ok()) return FromGrpcStatus(s);
  return status;
}

void AgentClientGrpc::GetStatusAsync(absl::Duration deadline,
                                     StatusCallback on_done) {
  struct Call {
    explicit Call(std::shared_ptr<grpc::Channel> c) : channel(std::move(c)) {}
    // Destroyed last, so that when this call outlives the client, the
    // channel's last reference is not dropped inside ~ClientContext on a
    // gRPC thread (ChannelHold).
    ChannelHold channel;
    grpc::ClientContext context;
    hoist::v1::GetStatusRequest request;
    hoist::v1::AgentStatus response;
  };
  // Owned by the completion callback (gRPC keeps it until after it ran).
  auto call = std::make_shared<Call>(channel_);
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  call->context.set_wait_for_ready(false);
  Call* raw = call.get();
  stub_->async()->GetStatus(
      &raw->context, &raw->request, &raw->response,
      [call, on_done = std::move(on_done)](const grpc::Status& s) {
        if (!s.ok()) {
          on_done(FromGrpcStatus(s));
        } else {
          on_done(std::move(call->response));
        }
      });
}

std::unique_ptr<StreamHandle> AgentClientGrpc::WatchContainers(
    const hoist::v1::WatchContainersRequest& request,
    ContainersEventCallback on_event, DoneCallback on_done) {
  auto watch = std::make_shared<ContainersWatch>(channel_, std::move(on_event),
                                                 std::move(on_done));
  watch->Start(stub_.get(), request);
  return std::make_unique<WatchHandle>(watch);
}

AgentClientPoolGrpc::AgentClientPoolGrpc(const std::vector<AgentEntry>& agents,
                                         const TlsMaterial& tls,
                                         const AgentCallConfig& call) {
  Update(agents, tls, call);
}

absl::StatusOr<std::shared_ptr<AgentClient>> AgentClientPoolGrpc::Get(
    const std::string& agent_name) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(agent_name);
  if (it == clients_.end()) {
    return absl::NotFoundError(
        absl::StrCat("agent ", agent_name, " is not configured"));
  }
  return it->second.client;
}

void AgentClientPoolGrpc::Update(const std::vector<AgentEntry>& agents,
                                 const TlsMaterial& tls,
                                 const AgentCallConfig& call) {
  const std::string creds_key =
      Sha256Hex(absl::StrCat(tls.ca_pem, "\n", tls.cert_pem, "\n", tls.key_pem,
                             "\n", call.connect_timeout_seconds));
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::map<std::string, Entry> next;
  absl::MutexLock lock(&mu_);
  for (const AgentEntry& agent : agents) {
    const std::string key =
        absl::StrCat(agent.address, "|", AgentTlsName(agent), "|", creds_key);
    auto old = clients_.find(agent.name);
    if (old != clients_.end() && old->second.key == key) {
      Entry e = old->second;
      e.agent = agent;
      next[agent.name] = std::move(e);
      continue;
    }
    if (!credentials) credentials = AgentChannelCredentials(tls);
    next[agent.name] =
        Entry{agent, key,
              std::make_shared<AgentClientGrpc>(agent, credentials, call)};
  }
  clients_.swap(next);
}

}  // namespace hoist::receiver
