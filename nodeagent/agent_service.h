// AgentService: the hoist.v1.NodeAgent gRPC service on the callback API.
//
// A thin adapter: it authorizes each call by the peer's certificate identity
// (RoleAuthorizer roles "deployers" and "viewers"), translates to the
// AgentHandler and back, and streams DeployLogs. Deploy, Rollback and
// WatchDeploy replay the log from its first event, then follow it, and finish
// OK after the terminal event. A client that cancels its stream never cancels
// the deploy: the handler's worker owns it. WatchContainers streams a
// ContainerWatcher subscription (a snapshot, then one event per change)
// until the client cancels or the watcher stops (UNAVAILABLE then); without
// a watcher it is UNIMPLEMENTED.
//
// Roles: "deployers" may call everything; "viewers" GetStatus,
// ListContainers, WatchDeploy and WatchContainers (docs/design.md,
// "Identities and roles"). Anyone else gets PERMISSION_DENIED naming their
// identity.
//
// Thread-safety: every method may be called concurrently by gRPC. The
// authorizer can be swapped at any time (SIGHUP reload); a call uses the one
// current when it arrived. The handler must outlive the service, and the
// service must outlive the grpc::Server it is registered with (destroy it
// after Shutdown() returned).
#ifndef HOIST_NODEAGENT_AGENT_SERVICE_H_
#define HOIST_NODEAGENT_AGENT_SERVICE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "nodeagent/agent_handler.h"
#include "nodeagent/container_watcher.h"

namespace hoist::nodeagent {

// Role names in the agent's RoleAuthorizer.
inline constexpr char kDeployersRole[] = "deployers";
inline constexpr char kViewersRole[] = "viewers";

// Builds the agent's authorizer from config lists.
std::shared_ptr<const RoleAuthorizer> MakeAgentAuthorizer(
    const std::vector<std::string>& deployers,
    const std::vector<std::string>& viewers);

class AgentService final : public hoist::v1::NodeAgent::CallbackService {
 public:
  // `handler` is not owned. `metrics` may be null; when set, the service
  // counts calls (hoist_agent_rpcs_total{method,code}) and, from the events
  // of the deploys started through it, their outcomes and times
  // (hoist_agent_deploys_total{phase}, hoist_agent_deploy_duration_seconds,
  // hoist_agent_pull_duration_seconds, hoist_agent_pulled_bytes_total).
  // `containers` (not owned, may be null) serves WatchContainers and must
  // outlive the service.
  AgentService(AgentHandler* handler,
               std::shared_ptr<const RoleAuthorizer> authorizer,
               MetricsRegistry* metrics = nullptr,
               ContainerWatcher* containers = nullptr);
  ~AgentService() override;

  AgentService(const AgentService&) = delete;
  AgentService& operator=(const AgentService&) = delete;

  // Replaces the authorizer used by calls that arrive from now on.
  void SetAuthorizer(std::shared_ptr<const RoleAuthorizer> authorizer);

  grpc::ServerWriteReactor<hoist::v1::DeployEvent>* Deploy(
      grpc::CallbackServerContext* context,
      const hoist::v1::DeployRequest* request) override;
  grpc::ServerWriteReactor<hoist::v1::DeployEvent>* Rollback(
      grpc::CallbackServerContext* context,
      const hoist::v1::RollbackRequest* request) override;
  grpc::ServerWriteReactor<hoist::v1::DeployEvent>* WatchDeploy(
      grpc::CallbackServerContext* context,
      const hoist::v1::WatchDeployRequest* request) override;
  grpc::ServerUnaryReactor* GetStatus(
      grpc::CallbackServerContext* context,
      const hoist::v1::GetStatusRequest* request,
      hoist::v1::AgentStatus* response) override;
  grpc::ServerUnaryReactor* ListContainers(
      grpc::CallbackServerContext* context,
      const hoist::v1::ListContainersRequest* request,
      hoist::v1::ListContainersResponse* response) override;
  grpc::ServerWriteReactor<hoist::v1::ContainersEvent>* WatchContainers(
      grpc::CallbackServerContext* context,
      const hoist::v1::WatchContainersRequest* request) override;

 private:
  class Worker;

  // OK when the peer holds one of `roles`.
  absl::Status Authorize(grpc::CallbackServerContext* context,
                         const std::vector<std::string>& roles);
  // A reactor streaming `log`, or finishing at once with `log`'s error.
  grpc::ServerWriteReactor<hoist::v1::DeployEvent>* Stream(
      const char* method, absl::StatusOr<std::shared_ptr<DeployLog>> log);
  // Runs a finished stream's cleanup on cleanup_.
  std::function<void(std::function<void()>)> CleanupRunner();
  // A reactor for `method` whose log comes from `start`, run on worker_;
  // the outcome is tracked and the call counted there.
  grpc::ServerWriteReactor<hoist::v1::DeployEvent>* StartOnWorker(
      const char* method,
      std::function<absl::StatusOr<std::shared_ptr<DeployLog>>()> start);
  void CountCall(const char* method, const absl::Status& status);
  // Counts `log`'s outcome once, when it ends (no-op without metrics).
  void TrackOutcome(const std::shared_ptr<DeployLog>& log);

  AgentHandler* const handler_;
  MetricsRegistry* const metrics_;
  ContainerWatcher* const containers_;
  // Runs unary handler calls, and the start of Deploy and Rollback, off the
  // gRPC callback threads (they may talk to Docker, which can be slow when
  // it is in trouble).
  std::unique_ptr<Worker> worker_;
  // Runs finished streams' cleanup; never blocked behind Docker calls.
  std::unique_ptr<Worker> cleanup_;

  absl::Mutex mu_;
  std::shared_ptr<const RoleAuthorizer> authorizer_ ABSL_GUARDED_BY(mu_);
  // Deploys whose outcome is tracked, by id (expired entries are pruned).
  std::map<std::string, std::weak_ptr<DeployLog>> tracked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_AGENT_SERVICE_H_
