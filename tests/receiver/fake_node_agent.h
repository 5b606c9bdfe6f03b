// A tiny in-process NodeAgent for gRPC client and end-to-end-ish tests: a
// callback service that streams canned events, served over real mTLS.
#ifndef HOIST_TESTS_RECEIVER_FAKE_NODE_AGENT_H_
#define HOIST_TESTS_RECEIVER_FAKE_NODE_AGENT_H_

#include <memory>
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

  std::vector<hoist::v1::DeployRequest> deploys() {
    absl::MutexLock lock(&mu_);
    return deploys_;
  }
  std::vector<std::string> peers() {
    absl::MutexLock lock(&mu_);
    return peers_;
  }

 private:
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
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_FAKE_NODE_AGENT_H_
