// FakeAgentClientPool: scripted agents for rollout manager and Control tests.
//
// Each agent answers Deploy with the next scripted Behavior (default
// kSucceed). kBlock keeps the call open until Release() finishes it with a
// given behavior. Every call is recorded. Callbacks are invoked on the
// calling thread (kSucceed, kFail, kUnavailable) or on the test's thread
// (Release), like gRPC's they must not block. Thread-safe.
//
// WatchContainers streams stay open, silent, until the test sends events
// (SendWatchEvent), ends them (EndWatches) or the caller cancels them (then
// `on_done` runs CANCELLED on the cancelling thread); SetWatchFailure makes
// new streams end at once, inline. Callbacks of one stream never overlap.
#ifndef HOIST_TESTS_RECEIVER_FAKE_AGENT_POOL_H_
#define HOIST_TESTS_RECEIVER_FAKE_AGENT_POOL_H_

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "receiver/agent_client.h"

namespace hoist::receiver::testing {

enum class Behavior {
  kSucceed,      // PULLING, STARTING, SUCCEEDED; stream OK
  kFail,         // PULLING, ROLLING_BACK, ROLLED_BACK with an error; stream OK
  kUnavailable,  // stream ends UNAVAILABLE at once, no events
  kAborted,      // stream ends ABORTED (busy with another deploy)
  kBlock,        // stays open until Release()
};

struct RecordedCall {
  std::string agent;
  std::string kind;  // "deploy" or "rollback"
  std::string deploy_id;
  std::string digest;
  std::string container_name;
  bool start_existing = false;
};

// The digest every deploy by tag resolves to on a fake agent.
inline constexpr char kTagDigest[] =
    "sha256:7a9000000000000000000000000000000000000000000000000000000000007a";

class FakeAgentClientPool : public AgentClientPool {
 public:
  // Scripts the next Deploy calls of `agent`, in order.
  void Script(const std::string& agent, std::vector<Behavior> behaviors) {
    absl::MutexLock lock(&mu_);
    for (Behavior b : behaviors) scripts_[agent].push_back(b);
  }
  // Rollback calls stay open until Release() (by default they succeed).
  void BlockRollbacks() {
    absl::MutexLock lock(&mu_);
    block_rollbacks_ = true;
  }
  void SetDefault(Behavior b) {
    absl::MutexLock lock(&mu_);
    default_ = b;
  }

  // The same client for a name until ReplaceClient(name).
  absl::StatusOr<std::shared_ptr<AgentClient>> Get(
      const std::string& name) override {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<AgentClient>& client = clients_[name];
    if (client == nullptr) client = std::make_shared<Client>(this, name);
    return client;
  }
  // As AgentClientPoolGrpc::Update does for a new address or certificate.
  void ReplaceClient(const std::string& name) {
    absl::MutexLock lock(&mu_);
    clients_[name] = std::make_shared<Client>(this, name);
  }

  // WatchContainers calls made to `agent` so far.
  int WatchOpens(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    return WatchOpensLocked(agent);
  }
  // Waits (real time) until `agent` had at least `n` WatchContainers calls.
  bool WaitWatchOpens(const std::string& agent, int n,
                      absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto cond = [this, &agent, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return WatchOpensLocked(agent) >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  // Streams of `agent` open now.
  int OpenWatches(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(OpenWatchesLocked(agent).size());
  }
  // WatchContainersRequest.names of `agent`'s latest call.
  std::vector<std::string> WatchNames(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    for (auto it = watches_.rbegin(); it != watches_.rend(); ++it) {
      if ((*it)->agent == agent) return (*it)->names;
    }
    return {};
  }
  // Delivers `event` to every open stream of `agent`, on this thread.
  void SendWatchEvent(const std::string& agent,
                      const hoist::v1::ContainersEvent& event) {
    for (const auto& watch : OpenWatches_(agent)) watch->Event(event);
  }
  // Ends every open stream of `agent` with `status`, on this thread.
  void EndWatches(const std::string& agent, const absl::Status& status) {
    for (const auto& watch : OpenWatches_(agent)) watch->End(status);
  }
  // New WatchContainers calls to `agent` end at once with `status` (OK:
  // they stay open again).
  void SetWatchFailure(const std::string& agent, const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      watch_failures_.erase(agent);
    } else {
      watch_failures_[agent] = status;
    }
  }

  std::vector<RecordedCall> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // Agents of the calls currently blocked, in call order.
  std::vector<std::string> Blocked() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& b : blocked_) out.push_back(b.call.agent);
    return out;
  }
  // Waits (real time) until exactly `n` calls are blocked.
  bool WaitBlocked(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto cond = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return blocked_.size() == n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  // Finishes every blocked call of `agent` ("" for all) with `how`.
  void Release(const std::string& agent, Behavior how) {
    std::vector<Blocked_> release;
    {
      absl::MutexLock lock(&mu_);
      for (auto it = blocked_.begin(); it != blocked_.end();) {
        if (agent.empty() || it->call.agent == agent) {
          release.push_back(std::move(*it));
          it = blocked_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& b : release) Answer(b.call, how, b.on_event, b.on_done);
  }
  int64_t status_calls() {
    absl::MutexLock lock(&mu_);
    return status_calls_;
  }
  // Agents whose GetStatus fails UNAVAILABLE.
  void SetDown(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    down_.push_back(agent);
  }
  // From now on GetStatusAsync calls are held, unanswered, until
  // ReleaseStatusCalls() answers them (as an agent that answers late).
  void HoldStatusCalls() {
    absl::MutexLock lock(&mu_);
    hold_status_ = true;
  }
  // Waits (real time) until exactly `n` GetStatusAsync calls are held.
  bool WaitHeldStatusCalls(size_t n,
                           absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto cond = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return held_status_.size() == n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  // Stops holding and answers the held calls, in call order, on this thread.
  void ReleaseStatusCalls() {
    std::vector<std::pair<std::string, AgentClient::StatusCallback>> held;
    {
      absl::MutexLock lock(&mu_);
      hold_status_ = false;
      held.swap(held_status_);
    }
    for (auto& [agent, on_done] : held) on_done(Status(agent));
  }

 private:
  // One WatchContainers stream. Its callbacks run under `call_mu`, so they
  // never overlap, and not after End().
  struct Watch {
    std::string agent;
    std::vector<std::string> names;
    absl::Mutex call_mu;
    bool done ABSL_GUARDED_BY(call_mu) = false;
    ContainersEventCallback on_event ABSL_GUARDED_BY(call_mu);
    DoneCallback on_done ABSL_GUARDED_BY(call_mu);
    // Also read, racily-free, by the pool under its own lock.
    std::atomic<bool> open{true};

    void Event(const hoist::v1::ContainersEvent& event) {
      absl::MutexLock lock(&call_mu);
      if (!done && on_event) on_event(event);
    }
    void End(const absl::Status& status) {
      absl::MutexLock lock(&call_mu);
      if (done) return;
      done = true;
      open = false;
      DoneCallback callback = std::move(on_done);
      on_event = nullptr;
      if (callback) callback(status);
    }
  };
  class WatchHandle : public StreamHandle {
   public:
    explicit WatchHandle(std::shared_ptr<Watch> watch)
        : watch_(std::move(watch)) {}
    void Cancel() override {
      watch_->End(absl::CancelledError("cancelled by the caller"));
    }

   private:
    std::shared_ptr<Watch> watch_;
  };

  int WatchOpensLocked(const std::string& agent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int n = 0;
    for (const auto& w : watches_) n += w->agent == agent;
    return n;
  }
  std::vector<std::shared_ptr<Watch>> OpenWatchesLocked(
      const std::string& agent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::shared_ptr<Watch>> out;
    for (const auto& w : watches_) {
      if (w->agent == agent && w->open) out.push_back(w);
    }
    return out;
  }
  std::vector<std::shared_ptr<Watch>> OpenWatches_(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    return OpenWatchesLocked(agent);
  }

  std::unique_ptr<StreamHandle> StartWatch(
      const std::string& agent, const hoist::v1::WatchContainersRequest& r,
      ContainersEventCallback on_event, DoneCallback on_done) {
    auto watch = std::make_shared<Watch>();
    watch->agent = agent;
    watch->names.assign(r.names().begin(), r.names().end());
    {
      absl::MutexLock call_lock(&watch->call_mu);
      watch->on_event = std::move(on_event);
      watch->on_done = std::move(on_done);
    }
    absl::Status failure;
    {
      absl::MutexLock lock(&mu_);
      watches_.push_back(watch);
      if (auto it = watch_failures_.find(agent); it != watch_failures_.end())
        failure = it->second;
    }
    if (!failure.ok()) watch->End(failure);
    return std::make_unique<WatchHandle>(watch);
  }

  struct Blocked_ {
    RecordedCall call;
    DeployEventCallback on_event;
    DoneCallback on_done;
  };

  class Client : public AgentClient {
   public:
    Client(FakeAgentClientPool* pool, std::string name)
        : pool_(pool), name_(std::move(name)) {}
    void Deploy(const hoist::v1::DeployRequest& r, absl::Duration,
                DeployEventCallback on_event, DoneCallback on_done) override {
      pool_->Call(RecordedCall{name_, "deploy", r.deploy_id(), r.digest(),
                               r.container().name(), r.start_existing()},
                  std::move(on_event), std::move(on_done));
    }
    void Rollback(const hoist::v1::RollbackRequest& r, absl::Duration,
                  DeployEventCallback on_event, DoneCallback on_done) override {
      pool_->Call(RecordedCall{name_, "rollback", r.deploy_id(), "",
                               r.container_name(), false},
                  std::move(on_event), std::move(on_done));
    }
    void WatchDeploy(const std::string&, absl::Duration, DeployEventCallback,
                     DoneCallback on_done) override {
      on_done(absl::UnimplementedError("fake"));
    }
    absl::StatusOr<hoist::v1::AgentStatus> GetStatus(absl::Duration) override {
      return pool_->Status(name_);
    }
    void GetStatusAsync(absl::Duration, StatusCallback on_done) override {
      pool_->StatusAsync(name_, std::move(on_done));
    }
    std::unique_ptr<StreamHandle> WatchContainers(
        const hoist::v1::WatchContainersRequest& request,
        ContainersEventCallback on_event, DoneCallback on_done) override {
      return pool_->StartWatch(name_, request, std::move(on_event),
                               std::move(on_done));
    }

   private:
    FakeAgentClientPool* pool_;
    std::string name_;
  };

  absl::StatusOr<hoist::v1::AgentStatus> Status(const std::string& name) {
    absl::MutexLock lock(&mu_);
    ++status_calls_;
    for (const auto& d : down_) {
      if (d == name)
        return absl::UnavailableError(absl::StrCat(name, " is down"));
    }
    hoist::v1::AgentStatus s;
    s.set_host(name);
    s.set_version("0.1.0-fake");
    s.set_docker_version("20.10-fake");
    s.set_docker_reachable(true);
    return s;
  }

  // Answers at once (inline), unless calls are held.
  void StatusAsync(const std::string& name,
                   AgentClient::StatusCallback on_done) {
    {
      absl::MutexLock lock(&mu_);
      if (hold_status_) {
        held_status_.emplace_back(name, std::move(on_done));
        return;
      }
    }
    on_done(Status(name));
  }

  void Call(RecordedCall call, DeployEventCallback on_event,
            DoneCallback on_done) {
    Behavior how;
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
      how = default_;
      if (call.kind == "rollback") {
        how = block_rollbacks_ ? Behavior::kBlock : Behavior::kSucceed;
      } else {
        auto& q = scripts_[call.agent];
        if (!q.empty()) {
          how = q.front();
          q.pop_front();
        }
      }
      if (how == Behavior::kBlock) {
        blocked_.push_back(
            Blocked_{call, std::move(on_event), std::move(on_done)});
        return;
      }
    }
    Answer(call, how, on_event, on_done);
  }

  static void Answer(const RecordedCall& call, Behavior how,
                     const DeployEventCallback& on_event,
                     const DoneCallback& on_done) {
    auto event = [&](hoist::v1::DeployPhase p, const std::string& error = "") {
      hoist::v1::DeployEvent e;
      e.set_deploy_id(call.deploy_id);
      e.set_host(call.agent);
      e.set_phase(p);
      e.set_message(hoist::v1::DeployPhase_Name(p));
      e.set_error(error);
      // From PULLED on, the verified digest: a deploy by tag resolves to
      // kTagDigest.
      if (p != hoist::v1::DEPLOY_PHASE_PULLING && call.kind == "deploy") {
        e.set_digest(call.digest.empty() ? kTagDigest : call.digest);
      }
      on_event(e);
    };
    switch (how) {
      case Behavior::kSucceed:
        event(hoist::v1::DEPLOY_PHASE_PULLING);
        event(hoist::v1::DEPLOY_PHASE_STARTING);
        event(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
        on_done(absl::OkStatus());
        return;
      case Behavior::kFail:
        event(hoist::v1::DEPLOY_PHASE_PULLING);
        event(hoist::v1::DEPLOY_PHASE_ROLLING_BACK, "health check failed");
        event(hoist::v1::DEPLOY_PHASE_ROLLED_BACK,
              "health check failed: exit code 1");
        on_done(absl::OkStatus());
        return;
      case Behavior::kUnavailable:
        on_done(absl::UnavailableError("connection refused"));
        return;
      case Behavior::kAborted:
        on_done(absl::AbortedError("busy with deploy other-1"));
        return;
      case Behavior::kBlock:
        on_done(absl::InternalError("fake: cannot answer with kBlock"));
        return;
    }
  }

  absl::Mutex mu_;
  std::map<std::string, std::deque<Behavior>> scripts_ ABSL_GUARDED_BY(mu_);
  Behavior default_ ABSL_GUARDED_BY(mu_) = Behavior::kSucceed;
  bool block_rollbacks_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<RecordedCall> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<Blocked_> blocked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> down_ ABSL_GUARDED_BY(mu_);
  bool hold_status_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<std::string, AgentClient::StatusCallback>> held_status_
      ABSL_GUARDED_BY(mu_);
  int64_t status_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::shared_ptr<AgentClient>> clients_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Watch>> watches_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> watch_failures_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_FAKE_AGENT_POOL_H_
