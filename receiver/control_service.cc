#include "receiver/control_service.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/tsan.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace hoist::receiver {
namespace {

const std::vector<std::string> kViewerRoles = {"operators", "viewers"};
const std::vector<std::string> kOperatorRoles = {"operators"};

std::shared_ptr<const RoleAuthorizer> MakeAuthorizer(
    const ReceiverConfig& config) {
  return std::make_shared<const RoleAuthorizer>(
      std::map<std::string, std::vector<std::string>>{
          {"operators", config.operators}, {"viewers", config.viewers}});
}

grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Streams a rollout subscription to one client. Deletes itself in OnDone.
class WatchReactor : public grpc::ServerWriteReactor<hoist::v1::RolloutEvent> {
 public:
  // Shared with the subscription's notify callback, which may outlive us.
  struct Link {
    absl::Mutex mu;
    WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  WatchReactor() : link_(std::make_shared<Link>()) {
    absl::MutexLock lock(&link_->mu);
    link_->reactor = this;
  }

  void Begin(RolloutController* manager, const std::string& id) {
    std::shared_ptr<Link> link = link_;
    absl::StatusOr<std::shared_ptr<RolloutSubscription>> sub =
        manager->Watch(id, [link] {
          absl::MutexLock lock(&link->mu);
          if (link->reactor != nullptr) link->reactor->PumpLocked();
        });
    absl::MutexLock lock(&link_->mu);
    if (!sub.ok()) {
      finished_ = true;
      Finish(ToGrpcStatus(sub.status()));
      return;
    }
    sub_ = *sub;
    PumpLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&link_->mu);
    writing_ = false;
    if (!ok || cancelled_) {
      if (!finished_) {
        finished_ = true;
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
      }
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    TsanServerOnCancelScope tsan_scope;
    absl::MutexLock lock(&link_->mu);
    cancelled_ = true;
    if (!writing_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
    }
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&link_->mu);
      link_->reactor = nullptr;
    }
    if (sub_) sub_->Cancel();
    delete this;
  }

  // Writes the next queued event, or finishes once the rollout ended.
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_->mu) {
    if (writing_ || finished_ || cancelled_ || !sub_) return;
    bool ended = false;
    if (sub_->Pop(&event_, &ended)) {
      writing_ = true;
      // No WriteOptions().set_buffer_hint() for queued bursts: gRPC may not
      // complete a buffer-hinted write (no OnWriteDone) until something else
      // makes the transport write, and on a stream's first message never
      // (grpc/grpc#12975, #34231). fleet_bench saw a watch stall that way
      // for 15 minutes on a one-host rollout that had ended.
      StartWrite(&event_);
      return;
    }
    if (ended) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

 private:
  std::shared_ptr<Link> link_;
  std::shared_ptr<RolloutSubscription> sub_;
  hoist::v1::RolloutEvent event_;
  bool writing_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
};

}  // namespace

hoist::v1::AgentInfo ToAgentInfo(const AgentState& agent) {
  hoist::v1::AgentInfo info;
  info.set_name(agent.name);
  info.set_address(agent.address);
  for (const auto& [k, v] : agent.labels) (*info.mutable_labels())[k] = v;
  info.set_reachable(agent.Reachable());
  info.set_version(agent.version);
  info.set_docker_version(agent.docker_version);
  if (agent.last_seen != absl::InfinitePast()) {
    *info.mutable_last_seen() = ToProto(agent.last_seen);
  }
  info.set_last_error(agent.last_error);
  return info;
}

hoist::v1::ListAgentsResponse ListAgentsFrom(const FleetView& fleet) {
  hoist::v1::ListAgentsResponse response;
  for (const AgentState& agent : fleet.Agents()) {
    *response.add_agents() = ToAgentInfo(agent);
  }
  return response;
}

ControlService::ControlService(RolloutController* manager,
                               const FleetView* fleet,
                               std::shared_ptr<const ReceiverConfig> config)
    : manager_(manager), fleet_(fleet) {
  UpdateConfig(std::move(config));
}

ControlService::~ControlService() = default;

void ControlService::UpdateConfig(
    std::shared_ptr<const ReceiverConfig> config) {
  auto authorizer = MakeAuthorizer(*config);
  absl::MutexLock lock(&mu_);
  config_ = std::move(config);
  authorizer_ = std::move(authorizer);
}

std::shared_ptr<const ReceiverConfig> ControlService::config() {
  absl::MutexLock lock(&mu_);
  return config_;
}

absl::Status ControlService::Authorize(grpc::CallbackServerContext* context,
                                       bool operator_only) {
  std::shared_ptr<const RoleAuthorizer> authorizer;
  {
    absl::MutexLock lock(&mu_);
    authorizer = authorizer_;
  }
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth == nullptr)
    return absl::UnauthenticatedError("no client certificate");
  absl::Status s = authorizer->CheckPeer(
      *auth, operator_only ? kOperatorRoles : kViewerRoles);
  if (!s.ok()) {
    LogWarning("control call refused", {{"error", std::string(s.message())}});
  }
  return s;
}

grpc::ServerUnaryReactor* ControlService::ListAgents(
    grpc::CallbackServerContext* context, const hoist::v1::ListAgentsRequest*,
    hoist::v1::ListAgentsResponse* response) {
  absl::Status auth = Authorize(context, false);
  if (!auth.ok()) return FinishWith(context, auth);
  // From the streams' state: no agent is asked (docs/design.md, "Desired
  // state and convergence").
  *response = ListAgentsFrom(*fleet_);
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ControlService::ListRollouts(
    grpc::CallbackServerContext* context,
    const hoist::v1::ListRolloutsRequest* request,
    hoist::v1::ListRolloutsResponse* response) {
  absl::Status auth = Authorize(context, false);
  if (!auth.ok()) return FinishWith(context, auth);
  int limit = request->limit() <= 0 ? 50 : std::min(request->limit(), 1000);
  absl::StatusOr<std::vector<hoist::v1::Rollout>> rows =
      manager_->ListRollouts(request->service(), limit);
  if (rows.ok()) {
    for (hoist::v1::Rollout& r : *rows)
      *response->add_rollouts() = std::move(r);
  }
  return FinishWith(context, rows.status());
}

grpc::ServerUnaryReactor* ControlService::GetRollout(
    grpc::CallbackServerContext* context,
    const hoist::v1::GetRolloutRequest* request, hoist::v1::Rollout* response) {
  absl::Status auth = Authorize(context, false);
  if (!auth.ok()) return FinishWith(context, auth);
  absl::StatusOr<hoist::v1::Rollout> r = manager_->GetRollout(request->id());
  if (r.ok()) *response = std::move(*r);
  return FinishWith(context, r.status());
}

grpc::ServerWriteReactor<hoist::v1::RolloutEvent>* ControlService::WatchRollout(
    grpc::CallbackServerContext* context,
    const hoist::v1::WatchRolloutRequest* request) {
  auto* reactor = new WatchReactor();
  absl::Status auth = Authorize(context, false);
  if (!auth.ok()) {
    // OnDone deletes the reactor.
    reactor->Finish(ToGrpcStatus(auth));
    return reactor;
  }
  reactor->Begin(manager_, request->id());
  return reactor;
}

grpc::ServerUnaryReactor* ControlService::Deploy(
    grpc::CallbackServerContext* context,
    const hoist::v1::ManualDeployRequest* request,
    hoist::v1::Rollout* response) {
  absl::Status auth = Authorize(context, true);
  if (!auth.ok()) return FinishWith(context, auth);
  absl::StatusOr<hoist::v1::Rollout> r = manager_->ManualDeploy(
      request->service(), request->digest(), request->tag());
  if (r.ok()) *response = std::move(*r);
  return FinishWith(context, r.status());
}

grpc::ServerUnaryReactor* ControlService::Rollback(
    grpc::CallbackServerContext* context,
    const hoist::v1::RollbackServiceRequest* request,
    hoist::v1::Rollout* response) {
  absl::Status auth = Authorize(context, true);
  if (!auth.ok()) return FinishWith(context, auth);
  absl::StatusOr<hoist::v1::Rollout> r =
      manager_->RollbackService(request->service());
  if (r.ok()) *response = std::move(*r);
  return FinishWith(context, r.status());
}

grpc::ServerUnaryReactor* ControlService::Resume(
    grpc::CallbackServerContext* context,
    const hoist::v1::ResumeRequest* request, hoist::v1::Rollout* response) {
  absl::Status auth = Authorize(context, true);
  if (!auth.ok()) return FinishWith(context, auth);
  absl::StatusOr<hoist::v1::Rollout> r = manager_->Resume(request->id());
  if (r.ok()) *response = std::move(*r);
  return FinishWith(context, r.status());
}

void ControlService::SetServiceStates(ServiceStates* services) {
  absl::MutexLock lock(&mu_);
  services_ = services;
}

ServiceStates* ControlService::services() {
  absl::MutexLock lock(&mu_);
  return services_;
}

namespace {

const absl::Status kNoServiceStates =
    absl::UnavailableError("the receiver's fleet state is not running yet");

}  // namespace

grpc::ServerUnaryReactor* ControlService::ListServices(
    grpc::CallbackServerContext* context,
    const hoist::v1::ListServicesRequest* /*request*/,
    hoist::v1::ListServicesResponse* response) {
  absl::Status auth = Authorize(context, false);
  if (!auth.ok()) return FinishWith(context, auth);
  ServiceStates* states = services();
  if (states == nullptr) return FinishWith(context, kNoServiceStates);
  for (hoist::v1::Service& s : states->ListServices()) {
    *response->add_services() = std::move(s);
  }
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ControlService::GetService(
    grpc::CallbackServerContext* context,
    const hoist::v1::GetServiceRequest* request, hoist::v1::Service* response) {
  absl::Status auth = Authorize(context, false);
  if (!auth.ok()) return FinishWith(context, auth);
  ServiceStates* states = services();
  if (states == nullptr) return FinishWith(context, kNoServiceStates);
  absl::StatusOr<hoist::v1::Service> s = states->GetService(request->name());
  if (s.ok()) *response = std::move(*s);
  return FinishWith(context, s.status());
}

grpc::ServerUnaryReactor* ControlService::Converge(
    grpc::CallbackServerContext* context,
    const hoist::v1::ConvergeRequest* request, hoist::v1::Rollout* response) {
  absl::Status auth = Authorize(context, true);
  if (!auth.ok()) return FinishWith(context, auth);
  ServiceStates* states = services();
  if (states == nullptr) return FinishWith(context, kNoServiceStates);
  absl::StatusOr<hoist::v1::Rollout> r = states->Converge(request->service());
  if (r.ok()) *response = std::move(*r);
  return FinishWith(context, r.status());
}

grpc::ServerUnaryReactor* ControlService::Cancel(
    grpc::CallbackServerContext* context,
    const hoist::v1::CancelRequest* request, hoist::v1::Rollout* response) {
  absl::Status auth = Authorize(context, true);
  if (!auth.ok()) return FinishWith(context, auth);
  absl::StatusOr<hoist::v1::Rollout> r = manager_->Cancel(request->id());
  if (r.ok()) *response = std::move(*r);
  return FinishWith(context, r.status());
}

void ControlService::SetNotificationTester(NotificationTester* tester) {
  absl::MutexLock lock(&mu_);
  tester_ = tester;
}

grpc::ServerUnaryReactor* ControlService::TestNotification(
    grpc::CallbackServerContext* context,
    const hoist::v1::TestNotificationRequest* request,
    hoist::v1::TestNotificationResponse* response) {
  absl::Status auth = Authorize(context, true);
  if (!auth.ok()) return FinishWith(context, auth);
  NotificationTester* tester;
  {
    absl::MutexLock lock(&mu_);
    tester = tester_;
  }
  if (tester == nullptr) {
    return FinishWith(context,
                      absl::UnavailableError("notifications are not running"));
  }
  // The send blocks (a sink may take its whole timeout): it runs on the
  // tester's worker, which finishes the reactor.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  tester->SendTestAsync(
      request->sink(),
      [reactor,
       response](absl::StatusOr<hoist::v1::TestNotificationResponse> result) {
        const absl::Status status = result.status();
        if (result.ok()) *response = *std::move(result);
        reactor->Finish(ToGrpcStatus(status));
      });
  return reactor;
}

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(
    const std::string& listen, const TlsMaterial& tls,
    ControlService* service) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // Links grpc.health.v1's descriptors in, so that reflection can describe
  // the health service (see proto/CMakeLists.txt).
  grpc::health::v1::HealthCheckRequest::descriptor();
  std::unique_ptr<ControlServer> server(new ControlServer());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, MutualTlsServerCredentials(tls),
                           &server->port_);
  builder.RegisterService(service);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("control: cannot listen on ", listen));
  }
  grpc::HealthCheckServiceInterface* health =
      server->server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus("", true);
    health->SetServingStatus("hoist.v1.Control", true);
  }
  return server;
}

ControlServer::~ControlServer() { Shutdown(); }

void ControlServer::Shutdown() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
  server_.reset();
}

}  // namespace hoist::receiver
