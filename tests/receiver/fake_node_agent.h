// A tiny in-process NodeAgent for gRPC client and end-to-end-ish tests: a
// callback service that streams canned events, served over real mTLS.
//
// WatchContainers sends a snapshot of the containers set with
// SetContainers() (docker_reachable), then every event given to
// PushContainersEvent(), and stays open until the client cancels or the
// server shuts down. Thread-safe.
#ifndef HOIST_TESTS_RECEIVER_FAKE_NODE_AGENT_H_
#define HOIST_TESTS_RECEIVER_FAKE_NODE_AGENT_H_

#include <deque>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/tls.h"
#include "common/tsan.h"
#include "grpcpp/grpcpp.h"
#include "hoist/v1/agent.grpc.pb.h"

namespace hoist::receiver::testing {

class FakeNodeAgent : public hoist::v1::NodeAgent::CallbackService {
 public:
  // Deploy streams PULLING, STARTING, SUCCEEDED for its deploy id, except:
  // deploy_id "slow" streams nothing until the call is cancelled.
  grpc::ServerWriteReactor<hoist::v1::DeployEvent>* Deploy(
      grpc::CallbackServerContext* context,
      const hoist::v1::DeployRequest* request) override {
    Record(context, request->deploy_id());
    {
      absl::MutexLock lock(&mu_);
      deploys_.push_back(*request);
    }
    std::vector<hoist::v1::DeployEvent> events;
    if (request->deploy_id() != "slow") {
      for (auto p :
           {hoist::v1::DEPLOY_PHASE_PULLING, hoist::v1::DEPLOY_PHASE_STARTING,
            hoist::v1::DEPLOY_PHASE_SUCCEEDED}) {
        hoist::v1::DeployEvent e;
        e.set_deploy_id(request->deploy_id());
        e.set_host("fake");
        e.set_phase(p);
        events.push_back(e);
      }
    }
    return new Writer(std::move(events), request->deploy_id() == "slow");
  }
  grpc::ServerWriteReactor<hoist::v1::DeployEvent>* Rollback(
      grpc::CallbackServerContext* context,
      const hoist::v1::RollbackRequest* request) override {
    Record(context, request->deploy_id());
    hoist::v1::DeployEvent e;
    e.set_deploy_id(request->deploy_id());
    e.set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    e.set_message("rolled back " + request->container_name());
    return new Writer({e}, false);
  }
  grpc::ServerUnaryReactor* GetStatus(
      grpc::CallbackServerContext* context, const hoist::v1::GetStatusRequest*,
      hoist::v1::AgentStatus* response) override {
    Record(context, "status");
    response->set_host("fake");
    response->set_version("9.9.9");
    response->set_docker_version("20.10.24");
    response->set_docker_reachable(true);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<hoist::v1::ContainersEvent>* WatchContainers(
      grpc::CallbackServerContext* context,
      const hoist::v1::WatchContainersRequest* request) override {
    Record(context, "watch");
    hoist::v1::ContainersEvent snapshot;
    snapshot.set_snapshot(true);
    snapshot.set_docker_reachable(true);
    absl::MutexLock lock(&mu_);
    watch_names_.emplace_back(request->names().begin(), request->names().end());
    for (const auto& c : containers_) *snapshot.add_containers() = c;
    auto* watch = new ContainersWriter(this);
    watches_.insert(watch);
    watch->Push(snapshot);
    return watch;
  }

  // The containers of the next snapshots.
  void SetContainers(std::vector<hoist::v1::ManagedContainer> containers) {
    absl::MutexLock lock(&mu_);
    containers_ = std::move(containers);
  }
  // Sends `event` on every open WatchContainers stream.
  void PushContainersEvent(const hoist::v1::ContainersEvent& event) {
    absl::MutexLock lock(&mu_);
    for (ContainersWriter* w : watches_) w->Push(event);
  }
  // Waits (real time) until exactly `n` WatchContainers streams are open.
  bool WaitOpenWatches(size_t n, absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    auto cond = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return watches_.size() == n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), timeout);
  }
  // WatchContainersRequest.names of each call, in call order.
  std::vector<std::vector<std::string>> watch_names() {
    absl::MutexLock lock(&mu_);
    return watch_names_;
  }

  std::vector<hoist::v1::DeployRequest> deploys() {
    absl::MutexLock lock(&mu_);
    return deploys_;
  }
  std::vector<std::string> peers() {
    absl::MutexLock lock(&mu_);
    return peers_;
  }

 private:
  // One WatchContainers stream: one write in flight, the rest queued.
  class ContainersWriter
      : public grpc::ServerWriteReactor<hoist::v1::ContainersEvent> {
   public:
    explicit ContainersWriter(FakeNodeAgent* agent) : agent_(agent) {}
    void Push(const hoist::v1::ContainersEvent& event) {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      queue_.push_back(event);
      NextLocked();
    }
    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        FinishLocked(grpc::Status::CANCELLED);
        return;
      }
      NextLocked();
    }
    void OnCancel() override {
      TsanServerOnCancelScope tsan_scope;
      absl::MutexLock lock(&mu_);
      FinishLocked(grpc::Status::CANCELLED);
    }
    void OnDone() override {
      {
        absl::MutexLock lock(&agent_->mu_);
        agent_->watches_.erase(this);
      }
      delete this;
    }

   private:
    void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (writing_ || finished_ || queue_.empty()) return;
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(&current_);
    }
    void FinishLocked(const grpc::Status& status)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finished_) return;
      finished_ = true;
      Finish(status);
    }

    FakeNodeAgent* const agent_;
    absl::Mutex mu_;
    std::deque<hoist::v1::ContainersEvent> queue_ ABSL_GUARDED_BY(mu_);
    hoist::v1::ContainersEvent current_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
  };

  class Writer : public grpc::ServerWriteReactor<hoist::v1::DeployEvent> {
   public:
    Writer(std::vector<hoist::v1::DeployEvent> events, bool hang)
        : events_(std::move(events)), hang_(hang) {
      if (!hang_) Next();
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::CANCELLED);
        return;
      }
      Next();
    }
    void OnCancel() override {
      TsanServerOnCancelScope tsan_scope;
      if (hang_) Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

   private:
    void Next() {
      if (next_ < events_.size()) {
        StartWrite(&events_[next_++]);
      } else {
        Finish(grpc::Status::OK);
      }
    }
    std::vector<hoist::v1::DeployEvent> events_;
    size_t next_ = 0;
    bool hang_;
  };

  void Record(grpc::CallbackServerContext* context, const std::string&) {
    std::vector<std::string> ids = PeerIdentities(*context->auth_context());
    absl::MutexLock lock(&mu_);
    peers_.insert(peers_.end(), ids.begin(), ids.end());
  }

  absl::Mutex mu_;
  std::vector<hoist::v1::DeployRequest> deploys_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> peers_ ABSL_GUARDED_BY(mu_);
  std::vector<hoist::v1::ManagedContainer> containers_ ABSL_GUARDED_BY(mu_);
  std::set<ContainersWriter*> watches_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> watch_names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_FAKE_NODE_AGENT_H_
