// ControlService: the gRPC Control API (hoist.v1.Control), a thin adapter
// with the callback API: it authorizes the caller, translates protos and
// calls a RolloutController (rollouts; RolloutManager in the receiver) and
// a FleetView (ListAgents, answered from the agents' WatchContainers streams
// with no call to any agent; FleetWatcher in the receiver).
//
// Authorization by client certificate identity (RoleAuthorizer):
// authz.operators may call everything (TestNotification only they);
// authz.viewers may call ListAgents,
// ListRollouts, GetRollout, WatchRollout, ListServices and GetService. Other
// peers get PERMISSION_DENIED naming their identity.
//
// ControlServer runs it on control.listen over mTLS, with the standard
// health service and server reflection (open to any certificate of the
// fleet CA).
//
// Thread-safety: all methods are safe from any thread.
#ifndef HOIST_RECEIVER_CONTROL_SERVICE_H_
#define HOIST_RECEIVER_CONTROL_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "hoist/v1/control.grpc.pb.h"
#include "receiver/agent_client.h"
#include "receiver/config.h"
#include "receiver/fleet_view.h"
#include "receiver/notification_sender.h"
#include "receiver/rollout_controller.h"
#include "receiver/service_states.h"

namespace hoist::receiver {

// An agent as ListAgents reports it: reachable when its stream is up and it
// reaches its dockerd; last_seen unset when it never answered.
hoist::v1::AgentInfo ToAgentInfo(const AgentState& agent);
// ListAgents' answer, from the streams' state (no agent is asked).
hoist::v1::ListAgentsResponse ListAgentsFrom(const FleetView& fleet);

class ControlService : public hoist::v1::Control::CallbackService {
 public:
  // `manager` and `fleet` are not owned and must outlive the service.
  ControlService(RolloutController* manager, const FleetView* fleet,
                 std::shared_ptr<const ReceiverConfig> config);
  ~ControlService() override;

  // The fleet per service (ListServices, GetService, Converge); not owned,
  // must outlive the service. Until set those RPCs answer UNAVAILABLE.
  void SetServiceStates(ServiceStates* services);

  // Sends TestNotification's messages; not owned, must outlive the service.
  // Until set TestNotification answers UNAVAILABLE.
  void SetNotificationTester(NotificationTester* tester);

  // New authz and agent list for later calls (SIGHUP).
  void UpdateConfig(std::shared_ptr<const ReceiverConfig> config);

  grpc::ServerUnaryReactor* ListAgents(
      grpc::CallbackServerContext* context,
      const hoist::v1::ListAgentsRequest* request,
      hoist::v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* ListRollouts(
      grpc::CallbackServerContext* context,
      const hoist::v1::ListRolloutsRequest* request,
      hoist::v1::ListRolloutsResponse* response) override;
  grpc::ServerUnaryReactor* GetRollout(
      grpc::CallbackServerContext* context,
      const hoist::v1::GetRolloutRequest* request,
      hoist::v1::Rollout* response) override;
  grpc::ServerWriteReactor<hoist::v1::RolloutEvent>* WatchRollout(
      grpc::CallbackServerContext* context,
      const hoist::v1::WatchRolloutRequest* request) override;
  grpc::ServerUnaryReactor* Deploy(
      grpc::CallbackServerContext* context,
      const hoist::v1::ManualDeployRequest* request,
      hoist::v1::Rollout* response) override;
  grpc::ServerUnaryReactor* Rollback(
      grpc::CallbackServerContext* context,
      const hoist::v1::RollbackServiceRequest* request,
      hoist::v1::Rollout* response) override;
  grpc::ServerUnaryReactor* Resume(grpc::CallbackServerContext* context,
                                   const hoist::v1::ResumeRequest* request,
                                   hoist::v1::Rollout* response) override;
  grpc::ServerUnaryReactor* ListServices(
      grpc::CallbackServerContext* context,
      const hoist::v1::ListServicesRequest* request,
      hoist::v1::ListServicesResponse* response) override;
  grpc::ServerUnaryReactor* GetService(
      grpc::CallbackServerContext* context,
      const hoist::v1::GetServiceRequest* request,
      hoist::v1::Service* response) override;
  grpc::ServerUnaryReactor* Converge(grpc::CallbackServerContext* context,
                                     const hoist::v1::ConvergeRequest* request,
                                     hoist::v1::Rollout* response) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* context,
                                   const hoist::v1::CancelRequest* request,
                                   hoist::v1::Rollout* response) override;
  grpc::ServerUnaryReactor* TestNotification(
      grpc::CallbackServerContext* context,
      const hoist::v1::TestNotificationRequest* request,
      hoist::v1::TestNotificationResponse* response) override;

 private:
  absl::Status Authorize(grpc::CallbackServerContext* context,
                         bool operator_only);
  std::shared_ptr<const ReceiverConfig> config();
  ServiceStates* services();

  RolloutController* const manager_;
  absl::Mutex mu_;
  std::shared_ptr<const ReceiverConfig> config_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const RoleAuthorizer> authorizer_ ABSL_GUARDED_BY(mu_);
  ServiceStates* services_ ABSL_GUARDED_BY(mu_) = nullptr;
  NotificationTester* tester_ ABSL_GUARDED_BY(mu_) = nullptr;
  const FleetView* const fleet_;
};

// The Control gRPC server.
class ControlServer {
 public:
  // Listens on `listen` ("host:port", port 0 picks one) with mTLS from `tls`.
  // UNAVAILABLE when it cannot bind.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(
      const std::string& listen, const TlsMaterial& tls,
      ControlService* service);
  ~ControlServer();  // Shutdown()s
  // Ends calls in progress (after a short grace) and stops. Idempotent.
  void Shutdown();
  int port() const { return port_; }

 private:
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_CONTROL_SERVICE_H_
