// FakeAgentHandler: an AgentHandler whose deploy logs the test writes itself,
// for testing the gRPC service without Docker.
#ifndef HOIST_TESTS_NODEAGENT_FAKE_AGENT_HANDLER_H_
#define HOIST_TESTS_NODEAGENT_FAKE_AGENT_HANDLER_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nodeagent/agent_handler.h"

namespace hoist::nodeagent {

inline hoist::v1::DeployEvent Event(hoist::v1::DeployPhase phase,
                                    const std::string& message) {
  hoist::v1::DeployEvent event;
  event.set_host("fake-host");
  event.set_phase(phase);
  event.set_message(message);
  return event;
}

// Deploy creates a log holding one PULLING event (or, with auto_complete,
// the whole sequence up to SUCCEEDED) and keeps it; the same deploy_id gets
// the same log; another deploy_id for a name whose log is unfinished gets
// ABORTED. Thread-safe.
class FakeAgentHandler : public AgentHandler {
 public:
  std::atomic<bool> docker_reachable{true};
  std::atomic<bool> auto_complete{false};

  absl::StatusOr<std::shared_ptr<DeployLog>> Deploy(
      const hoist::v1::DeployRequest& request) override {
    {
      // Held (see HoldDeploys) like a deploy manager whose first Docker
      // call is slow; bounded so that a failing test cannot hang.
      absl::MutexLock lock(&hold_mu_);
      ++held_;
      hold_mu_.AwaitWithTimeout(absl::Condition(
                                    +[](bool* hold) { return !*hold; }, &hold_),
                                absl::Seconds(30));
      --held_;
    }
    if (request.deploy_id().empty())
      return absl::InvalidArgumentError("deploy_id is empty");
    return Start(request.deploy_id(), request.container().name());
  }

  absl::StatusOr<std::shared_ptr<DeployLog>> Rollback(
      const hoist::v1::RollbackRequest& request) override {
    if (request.container_name() == "no-previous") {
      return absl::FailedPreconditionError("no previous image for no-previous");
    }
    return Start(request.deploy_id(), request.container_name());
  }

  absl::StatusOr<std::shared_ptr<DeployLog>> Watch(
      const std::string& deploy_id) override {
    absl::MutexLock lock(&mu_);
    auto it = logs_.find(deploy_id);
    if (it == logs_.end())
      return absl::NotFoundError(absl::StrCat("no deploy ", deploy_id));
    return it->second;
  }

  hoist::v1::AgentStatus GetStatus() override {
    hoist::v1::AgentStatus status;
    status.set_host("fake-host");
    status.set_version("test");
    status.set_docker_reachable(docker_reachable.load());
    absl::MutexLock lock(&mu_);
    for (const auto& [id, log] : logs_) {
      if (!log->finished()) status.add_in_flight(id);
    }
    return status;
  }

  absl::StatusOr<hoist::v1::ListContainersResponse> ListContainers() override {
    hoist::v1::ListContainersResponse response;
    hoist::v1::ManagedContainer* c = response.add_containers();
    c->set_name("helloworld");
    c->set_service("helloworld");
    c->set_state("running");
    return response;
  }

  // While `hold` is true, Deploy() calls wait inside the handler (at most
  // 30 s each) before they start.
  void HoldDeploys(bool hold) {
    absl::MutexLock lock(&hold_mu_);
    hold_ = hold;
  }

  // Waits (at most `timeout`) until `n` Deploy() calls are held; false if
  // they never were.
  bool WaitHeld(int n, absl::Duration timeout) {
    absl::MutexLock lock(&hold_mu_);
    struct Arg {
      int* held;
      int n;
    } arg{&held_, n};
    return hold_mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Arg* a) { return *a->held >= a->n; }, &arg),
        timeout);
  }

  // The log of `deploy_id`, or null.
  std::shared_ptr<DeployLog> log(const std::string& deploy_id) {
    absl::MutexLock lock(&mu_);
    auto it = logs_.find(deploy_id);
    return it == logs_.end() ? nullptr : it->second;
  }

  int deploy_calls() {
    absl::MutexLock lock(&mu_);
    return deploy_calls_;
  }

  // The phases a successful deploy goes through, in order.
  static std::vector<hoist::v1::DeployPhase> SuccessPhases() {
    using namespace hoist::v1;  // NOLINT: enum values
    return {DEPLOY_PHASE_PULLING,  DEPLOY_PHASE_PULLED,
            DEPLOY_PHASE_CREATING, DEPLOY_PHASE_STOPPING_OLD,
            DEPLOY_PHASE_STARTING, DEPLOY_PHASE_HEALTH_CHECKING,
            DEPLOY_PHASE_SUCCEEDED};
  }

  // Appends the rest of SuccessPhases() after the first to `log`.
  static void CompleteSuccessfully(DeployLog* log) {
    const auto phases = SuccessPhases();
    for (size_t i = 1; i < phases.size(); ++i) {
      log->Append(Event(phases[i], hoist::v1::DeployPhase_Name(phases[i])));
    }
  }

 private:
  absl::StatusOr<std::shared_ptr<DeployLog>> Start(const std::string& deploy_id,
                                                   const std::string& name) {
    absl::MutexLock lock(&mu_);
    ++deploy_calls_;
    if (auto it = logs_.find(deploy_id); it != logs_.end()) return it->second;
    for (const auto& [id, log] : logs_) {
      if (log->container_name() == name && !log->finished()) {
        return absl::AbortedError(
            absl::StrCat("container ", name, " is busy with deploy ", id));
      }
    }
    auto log = std::make_shared<DeployLog>(deploy_id, name);
    log->Append(Event(hoist::v1::DEPLOY_PHASE_PULLING, "DEPLOY_PHASE_PULLING"));
    if (auto_complete.load()) CompleteSuccessfully(log.get());
    logs_[deploy_id] = log;
    return log;
  }

  absl::Mutex hold_mu_;
  bool hold_ ABSL_GUARDED_BY(hold_mu_) = false;
  int held_ ABSL_GUARDED_BY(hold_mu_) = 0;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<DeployLog>> logs_ ABSL_GUARDED_BY(mu_);
  int deploy_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_TESTS_NODEAGENT_FAKE_AGENT_HANDLER_H_
