#include "nodeagent/agent_service.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/tsan.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployEvent;

const std::vector<std::string>& DeployerRoles() {
  static const auto* roles = new std::vector<std::string>{kDeployersRole};
  return *roles;
}
const std::vector<std::string>& ViewerRoles() {
  static const auto* roles =
      new std::vector<std::string>{kDeployersRole, kViewersRole};
  return *roles;
}

// A server stream with one write in flight, as in gRPC's route_guide: the
// derived class's NextWrite() starts a write when it has an event and none is
// in flight, OnWriteDone() asks for the next one, and the call is finished
// exactly once (TakeFinishLocked()). gRPC operations (StartWrite, Finish) are
// started outside mu_, because gRPC may run the resulting reaction inline on
// this thread. A client that goes away or cancels ends the call with
// CANCELLED; the derived class's OnDone() releases its source and deletes it.
template <typename Event>
class SingleWriterStreamReactor : public grpc::ServerWriteReactor<Event> {
 public:
  void OnWriteDone(bool ok) override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      // !ok: the client went away; the source (a deploy, the container
      // watcher) goes on without it.
      if (!ok || cancelled_) finish = TakeFinishLocked();
    }
    if (finish) {
      this->Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                                "stream closed by the client"));
      return;
    }
    NextWrite();
  }

  void OnCancel() override {
    TsanServerOnCancelScope tsan_scope;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (MayFinishOnCancelLocked() && !writing_) finish = TakeFinishLocked();
    }
    if (finish) {
      this->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    }
  }

 protected:
  // Starts the next write if CanWriteLocked() and there is an event, or
  // finishes when the source has ended. Never blocks; takes mu_.
  virtual void NextWrite() = 0;

  // Whether OnCancel() may finish the call (once no write is in flight).
  // A derived class says no while someone else is bound to finish it.
  virtual bool MayFinishOnCancelLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return true;
  }

  // No write in flight, the call not finishing, not cancelled: NextWrite()
  // may start a write or finish.
  bool CanWriteLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !writing_ && !finish_started_ && !cancelled_;
  }

  // Marks a write in flight; the caller then calls StartWrite() outside
  // mu_ with an event that stays put until OnWriteDone().
  void BeginWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
  }

  bool CancelledLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return cancelled_;
  }

  // True exactly once: the caller then calls Finish().
  bool TakeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_started_) return false;
    finish_started_ = true;
    return true;
  }

  // Guards the state here and the derived class's source.
  absl::Mutex mu_;

 private:
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_started_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// Streams one DeployLog to one client: replay from the first event, then
// follow. One write in flight; the log's watcher callback only schedules
// the next write. gRPC operations (StartWrite, Finish) are started outside
// mu_, because gRPC may run the resulting reaction inline on this thread.
// OnDone hands the cleanup to `cleanup` (another thread): the watcher may be
// running on this very thread inside DeployLog::Append, and RemoveWatcher
// waits for it.
//
// The log may come after the reactor was handed to gRPC (Attach(), from a
// worker thread: starting a deploy makes a Docker call, which must not run
// on gRPC's callback threads). Until then nothing is written and the call
// is not finished, so the reactor outlives Attach() even if the client
// cancels first; Attach() then finishes it.
class LogStreamReactor final : public SingleWriterStreamReactor<DeployEvent> {
 public:
  explicit LogStreamReactor(std::function<void(std::function<void()>)> cleanup)
      : cleanup_(std::move(cleanup)) {}

  // Gives the stream its log, or the error that answers the call. Must be
  // called exactly once.
  void Attach(absl::StatusOr<std::shared_ptr<DeployLog>> log) {
    if (!log.ok()) {
      {
        absl::MutexLock lock(&mu_);
        TakeFinishLocked();  // true: nothing else finishes before Attach()
      }
      Finish(ToGrpcStatus(log.status()));
      return;
    }
    std::shared_ptr<DeployLog> attached = *std::move(log);
    // Registered before the first read so no event can slip between the two;
    // callbacks before `attached_` is set are caught up by NextWrite() below.
    const int watcher = attached->AddWatcher([this] { NextWrite(); });
    bool finish_cancelled = false;
    {
      absl::MutexLock lock(&mu_);
      log_ = std::move(attached);
      watcher_ = watcher;
      attached_ = true;
      if (CancelledLocked()) finish_cancelled = TakeFinishLocked();
    }
    if (finish_cancelled) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      return;
    }
    NextWrite();
  }

  void OnDone() override {
    cleanup_([this] {
      std::shared_ptr<DeployLog> log;
      int watcher = -1;
      {
        absl::MutexLock lock(&mu_);
        log = log_;
        watcher = watcher_;
      }
      if (log != nullptr) log->RemoveWatcher(watcher);  // waits out a callback
      delete this;
    });
  }

 private:
  // Starts the next write if none is in flight, or finishes after the
  // terminal event was written. Never blocks.
  void NextWrite() override {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    {
      absl::MutexLock lock(&mu_);
      if (!attached_ || !CanWriteLocked()) return;
      if (pending_.empty()) {
        // Take everything new at once; later writes drain the local copy.
        std::vector<DeployEvent> events;
        log_finished_ = log_->Read(read_, &events);
        read_ += events.size();
        for (DeployEvent& e : events) pending_.push_back(std::move(e));
      }
      if (!pending_.empty()) {
        current_ = std::move(pending_.front());
        pending_.pop_front();
        BeginWriteLocked();
        action = kWrite;
      } else if (log_finished_ && TakeFinishLocked()) {
        action = kFinish;
      }
    }
    // current_ is stable while a write is in flight.
    if (action == kWrite) StartWrite(&current_);
    if (action == kFinish) Finish(grpc::Status::OK);
  }

  // Before Attach(), Attach() finishes a cancelled call.
  bool MayFinishOnCancelLocked() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return attached_;
  }

  const std::function<void(std::function<void()>)> cleanup_;
  std::shared_ptr<DeployLog> log_ ABSL_GUARDED_BY(mu_);
  int watcher_ ABSL_GUARDED_BY(mu_) = -1;
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  size_t read_ ABSL_GUARDED_BY(mu_) = 0;  // events taken from the log so far
  std::deque<DeployEvent> pending_
      ABSL_GUARDED_BY(mu_);  // taken, not yet written
  bool log_finished_ ABSL_GUARDED_BY(mu_) =
      false;  // the log had ended at the last read
  DeployEvent current_;
};

template <typename Event>
class ErrorStreamReactor final : public grpc::ServerWriteReactor<Event> {
 public:
  explicit ErrorStreamReactor(const grpc::Status& status) {
    this->Finish(status);
  }
  void OnDone() override { delete this; }
};

// Streams one ContainerWatcher subscription: its snapshot, then each change,
// one write in flight, until the client cancels (CANCELLED) or the watcher
// stops (UNAVAILABLE). The subscription's wake only schedules the next write
// (it runs on a watcher or deploy thread). As in LogStreamReactor, gRPC
// operations start outside mu_, and OnDone hands the unsubscribe to
// `cleanup`: it waits for a running wake, which may be on this very thread.
class ContainersStreamReactor final
    : public SingleWriterStreamReactor<hoist::v1::ContainersEvent> {
 public:
  ContainersStreamReactor(ContainerWatcher* watcher,
                          const std::vector<std::string>& names,
                          std::function<void(std::function<void()>)> cleanup)
      : cleanup_(std::move(cleanup)) {
    auto subscription = watcher->Subscribe(names, [this] { NextWrite(); });
    {
      absl::MutexLock lock(&mu_);
      subscription_ = std::move(subscription);
    }
    NextWrite();  // the snapshot, when the watcher has one
  }

  void OnDone() override {
    cleanup_([this] {
      std::unique_ptr<ContainerWatcher::Subscription> subscription;
      {
        absl::MutexLock lock(&mu_);
        subscription = std::move(subscription_);
      }
      subscription.reset();  // unsubscribes; waits out a running wake
      delete this;
    });
  }

 private:
  // Starts the next write if none is in flight, or finishes once the
  // watcher ended the subscription. Never blocks.
  void NextWrite() override {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    {
      absl::MutexLock lock(&mu_);
      if (subscription_ == nullptr || !CanWriteLocked()) return;
      switch (subscription_->Take(&current_)) {
        case ContainerWatcher::Next::kEvent:
          BeginWriteLocked();
          action = kWrite;
          break;
        case ContainerWatcher::Next::kEnded:
          if (TakeFinishLocked()) action = kFinish;
          break;
        case ContainerWatcher::Next::kEmpty:
          break;
      }
    }
    // current_ is stable while a write is in flight.
    if (action == kWrite) StartWrite(&current_);
    if (action == kFinish) {
      Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "the agent is stopping"));
    }
  }

  const std::function<void(std::function<void()>)> cleanup_;
  std::unique_ptr<ContainerWatcher::Subscription> subscription_
      ABSL_GUARDED_BY(mu_);
  hoist::v1::ContainersEvent current_;
};

// Turns one deploy's events into metrics as they are appended: pull time and
// bytes (hoist_agent_pull_duration_seconds, hoist_agent_pulled_bytes_total),
// the outcome (hoist_agent_deploys_total{phase}) and the total time
// (hoist_agent_deploy_duration_seconds). Update() never blocks for long; it
// runs inside DeployLog::Append, which keeps `log` alive meanwhile.
class DeployMetricsTracker {
 public:
  DeployMetricsTracker(MetricsRegistry* metrics, DeployLog* log)
      : metrics_(metrics), log_(log), start_(absl::Now()) {}

  void Update() {
    absl::MutexLock lock(&mu_);
    std::vector<DeployEvent> events;
    log_->Read(seen_, &events);
    seen_ += events.size();
    for (const DeployEvent& event : events) Observe(event);
  }

 private:
  void Observe(const DeployEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const hoist::v1::DeployPhase phase = event.phase();
    if (phase == hoist::v1::DEPLOY_PHASE_PULLING) {
      if (!pull_started_) pull_start_ = absl::Now();
      pull_started_ = true;
      if (!event.pull().layer().empty()) {
        int64_t& bytes = layer_bytes_[event.pull().layer()];
        bytes = std::max(bytes, event.pull().current_bytes());
      }
    } else if (phase == hoist::v1::DEPLOY_PHASE_PULLED && pull_started_ &&
               !pull_done_) {
      pull_done_ = true;
      metrics_
          ->GetHistogram("hoist_agent_pull_duration_seconds",
                         "Time to pull a deploy's image (deploys that pulled).",
                         MetricsRegistry::DurationBuckets())
          ->Observe(absl::ToDoubleSeconds(absl::Now() - pull_start_));
      // The deploy manager puts the pull's totals on PULLED (its layer
      // events are throttled); other handlers may only report layers.
      int64_t total = 0;
      if (event.has_pull() && event.pull().layer().empty()) {
        total = event.pull().total_bytes();
      } else {
        for (const auto& [layer, bytes] : layer_bytes_) total += bytes;
      }
      metrics_
          ->GetCounter(
              "hoist_agent_pulled_bytes_total",
              "Layer bytes downloaded by deploys, as Docker reported them.")
          ->Increment(static_cast<double>(total));
    } else if (IsTerminalPhase(phase) && !counted_) {
      counted_ = true;
      metrics_
          ->GetCounter("hoist_agent_deploys_total",
                       "Deploys on this host by terminal phase.",
                       {{"phase", hoist::v1::DeployPhase_Name(phase)}})
          ->Increment();
      metrics_
          ->GetHistogram("hoist_agent_deploy_duration_seconds",
                         "Time from a deploy's request to its terminal event.",
                         MetricsRegistry::DurationBuckets())
          ->Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    }
  }

  MetricsRegistry* const metrics_;
  DeployLog* const log_;
  const absl::Time start_;
  absl::Mutex mu_;
  size_t seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool pull_started_ ABSL_GUARDED_BY(mu_) = false;
  bool pull_done_ ABSL_GUARDED_BY(mu_) = false;
  bool counted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time pull_start_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> layer_bytes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

// A small pool running tasks in order of arrival. Its threads start on
// demand, one per task that finds no idle thread, up to `max_threads`, and
// then stay: an agent that is only asked for its status never starts the
// deploy threads (each costs stack and allocator pages of idle RSS).
// Destruction runs the tasks still queued, then joins.
class AgentService::Worker {
 public:
  explicit Worker(int max_threads) : max_threads_(max_threads) {}
  ~Worker() {
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }
  void Run(std::function<void()> task) {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
    if (!stopping_ && idle_ < tasks_.size() &&
        static_cast<int>(threads_.size()) < max_threads_) {
      threads_.emplace_back([this] { Loop(); });
    }
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        ++idle_;
        mu_.Await(absl::Condition(
            +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
              return w->stopping_ || !w->tasks_.empty();
            },
            this));
        --idle_;
        if (tasks_.empty()) return;  // stopping and drained
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  const int max_threads_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;  // threads waiting for a task
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

std::shared_ptr<const RoleAuthorizer> MakeAgentAuthorizer(
    const std::vector<std::string>& deployers,
    const std::vector<std::string>& viewers) {
  return std::make_shared<const RoleAuthorizer>(
      std::map<std::string, std::vector<std::string>>{
          {kDeployersRole, deployers}, {kViewersRole, viewers}});
}

AgentService::AgentService(AgentHandler* handler,
                           std::shared_ptr<const RoleAuthorizer> authorizer,
                           MetricsRegistry* metrics,
                           ContainerWatcher* containers)
    : handler_(handler),
      metrics_(metrics),
      containers_(containers),
      worker_(std::make_unique<Worker>(4)),
      cleanup_(std::make_unique<Worker>(1)),
      authorizer_(std::move(authorizer)) {}

AgentService::~AgentService() = default;

void AgentService::SetAuthorizer(
    std::shared_ptr<const RoleAuthorizer> authorizer) {
  absl::MutexLock lock(&mu_);
  authorizer_ = std::move(authorizer);
}

absl::Status AgentService::Authorize(grpc::CallbackServerContext* context,
                                     const std::vector<std::string>& roles) {
  std::shared_ptr<const RoleAuthorizer> authorizer;
  {
    absl::MutexLock lock(&mu_);
    authorizer = authorizer_;
  }
  auto auth_context = context->auth_context();
  if (auth_context == nullptr) return absl::UnauthenticatedError("no TLS peer");
  absl::Status status = authorizer->CheckPeer(*auth_context, roles);
  if (!status.ok()) {
    LogWarning("call refused", {{"peer", context->peer()},
                                {"reason", std::string(status.message())}});
  }
  return status;
}

void AgentService::CountCall(const char* method, const absl::Status& status) {
  if (metrics_ == nullptr) return;
  metrics_
      ->GetCounter("hoist_agent_rpcs_total",
                   "NodeAgent calls by method and result code.",
                   {{"method", method},
                    {"code", absl::StatusCodeToString(status.code())}})
      ->Increment();
}

void AgentService::TrackOutcome(const std::shared_ptr<DeployLog>& log) {
  if (metrics_ == nullptr || log->finished()) return;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = tracked_.begin(); it != tracked_.end();) {
      it = it->second.expired() ? tracked_.erase(it) : std::next(it);
    }
    auto [it, inserted] = tracked_.emplace(log->deploy_id(), log);
    if (!inserted) {
      if (it->second.lock() == log) return;  // already tracked
      it->second = log;
    }
  }
  auto tracker = std::make_shared<DeployMetricsTracker>(metrics_, log.get());
  log->AddWatcher([tracker] { tracker->Update(); });
  tracker->Update();  // events appended before the watcher was added
}

grpc::ServerWriteReactor<DeployEvent>* AgentService::Stream(
    const char* method, absl::StatusOr<std::shared_ptr<DeployLog>> log) {
  CountCall(method, log.status());
  if (!log.ok())
    return new ErrorStreamReactor<DeployEvent>(ToGrpcStatus(log.status()));
  auto* reactor = new LogStreamReactor(CleanupRunner());
  reactor->Attach(*std::move(log));
  return reactor;
}

std::function<void(std::function<void()>)> AgentService::CleanupRunner() {
  Worker* cleanup = cleanup_.get();
  return
      [cleanup](std::function<void()> task) { cleanup->Run(std::move(task)); };
}

// Deploy and Rollback start on the worker pool: the deploy manager inspects
// the container (a Docker call) before it answers, and gRPC's callback
// threads are shared by every call to this server. The request stays valid
// until the call is done, which is after Attach().
grpc::ServerWriteReactor<DeployEvent>* AgentService::StartOnWorker(
    const char* method,
    std::function<absl::StatusOr<std::shared_ptr<DeployLog>>()> start) {
  auto* reactor = new LogStreamReactor(CleanupRunner());
  worker_->Run([this, method, reactor, start = std::move(start)] {
    absl::StatusOr<std::shared_ptr<DeployLog>> log = start();
    if (log.ok()) TrackOutcome(*log);
    CountCall(method, log.status());
    reactor->Attach(std::move(log));
  });
  return reactor;
}

grpc::ServerWriteReactor<DeployEvent>* AgentService::Deploy(
    grpc::CallbackServerContext* context,
    const hoist::v1::DeployRequest* request) {
  if (absl::Status s = Authorize(context, DeployerRoles()); !s.ok())
    return Stream("Deploy", s);
  return StartOnWorker("Deploy", [this, request, peer = context->peer()] {
    auto log = handler_->Deploy(*request);
    if (log.ok()) {
      LogInfo("deploy requested", {{"deploy_id", request->deploy_id()},
                                   {"service", request->service()},
                                   {"digest", request->digest()},
                                   {"peer", peer}});
    }
    return log;
  });
}

grpc::ServerWriteReactor<DeployEvent>* AgentService::Rollback(
    grpc::CallbackServerContext* context,
    const hoist::v1::RollbackRequest* request) {
  if (absl::Status s = Authorize(context, DeployerRoles()); !s.ok())
    return Stream("Rollback", s);
  return StartOnWorker("Rollback", [this, request, peer = context->peer()] {
    auto log = handler_->Rollback(*request);
    if (log.ok()) {
      LogInfo("rollback requested", {{"deploy_id", request->deploy_id()},
                                     {"container", request->container_name()},
                                     {"peer", peer}});
    }
    return log;
  });
}

grpc::ServerWriteReactor<DeployEvent>* AgentService::WatchDeploy(
    grpc::CallbackServerContext* context,
    const hoist::v1::WatchDeployRequest* request) {
  if (absl::Status s = Authorize(context, ViewerRoles()); !s.ok())
    return Stream("WatchDeploy", s);
  return Stream("WatchDeploy", handler_->Watch(request->deploy_id()));
}

grpc::ServerUnaryReactor* AgentService::GetStatus(
    grpc::CallbackServerContext* context,
    const hoist::v1::GetStatusRequest* /*request*/,
    hoist::v1::AgentStatus* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = Authorize(context, ViewerRoles()); !s.ok()) {
    CountCall("GetStatus", s);
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  worker_->Run([this, reactor, response] {
    *response = handler_->GetStatus();
    CountCall("GetStatus", absl::OkStatus());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::ListContainers(
    grpc::CallbackServerContext* context,
    const hoist::v1::ListContainersRequest* /*request*/,
    hoist::v1::ListContainersResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = Authorize(context, ViewerRoles()); !s.ok()) {
    CountCall("ListContainers", s);
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  worker_->Run([this, reactor, response] {
    auto list = handler_->ListContainers();
    const absl::Status status = list.status();
    CountCall("ListContainers", status);
    if (list.ok()) *response = *std::move(list);
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

// Answered on the gRPC thread: Subscribe only reads the watcher's memory.
grpc::ServerWriteReactor<hoist::v1::ContainersEvent>*
AgentService::WatchContainers(
    grpc::CallbackServerContext* context,
    const hoist::v1::WatchContainersRequest* request) {
  using Reactor = ErrorStreamReactor<hoist::v1::ContainersEvent>;
  absl::Status status = Authorize(context, ViewerRoles());
  if (status.ok() && containers_ == nullptr) {
    status = absl::UnimplementedError("this agent does not watch containers");
  }
  CountCall("WatchContainers", status);
  if (!status.ok()) return new Reactor(ToGrpcStatus(status));
  const std::vector<std::string> names(request->names().begin(),
                                       request->names().end());
  return new ContainersStreamReactor(containers_, names, CleanupRunner());
}

}  // namespace hoist::nodeagent
