#include "cli/grpc_control_client.h"

#include <chrono>
#include <utility>

#include "common/status_macros.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "hoist/v1/control.grpc.pb.h"

namespace hoist::cli {
namespace {

using hoist::v1::Control;

class GrpcControlClient : public ControlClient {
 public:
  GrpcControlClient(std::unique_ptr<Control::Stub> stub,
                    GrpcControlClientOptions options)
      : stub_(std::move(stub)), options_(std::move(options)) {}

  absl::StatusOr<hoist::v1::ListAgentsResponse> ListAgents() override {
    return Unary<hoist::v1::ListAgentsResponse>(hoist::v1::ListAgentsRequest(),
                                                &Control::Stub::ListAgents);
  }
  absl::StatusOr<hoist::v1::ListRolloutsResponse> ListRollouts(
      const hoist::v1::ListRolloutsRequest& request) override {
    return Unary<hoist::v1::ListRolloutsResponse>(request,
                                                  &Control::Stub::ListRollouts);
  }
  absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) override {
    hoist::v1::GetRolloutRequest request;
    request.set_id(id);
    return Unary<hoist::v1::Rollout>(request, &Control::Stub::GetRollout);
  }
  absl::StatusOr<hoist::v1::Rollout> Deploy(
      const hoist::v1::ManualDeployRequest& request) override {
    return Unary<hoist::v1::Rollout>(request, &Control::Stub::Deploy);
  }
  absl::StatusOr<hoist::v1::Rollout> Rollback(
      const std::string& service) override {
    hoist::v1::RollbackServiceRequest request;
    request.set_service(service);
    return Unary<hoist::v1::Rollout>(request, &Control::Stub::Rollback);
  }
  absl::StatusOr<hoist::v1::Rollout> Resume(const std::string& id) override {
    hoist::v1::ResumeRequest request;
    request.set_id(id);
    return Unary<hoist::v1::Rollout>(request, &Control::Stub::Resume);
  }
  absl::StatusOr<hoist::v1::ListServicesResponse> ListServices() override {
    return Unary<hoist::v1::ListServicesResponse>(
        hoist::v1::ListServicesRequest(), &Control::Stub::ListServices);
  }
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override {
    hoist::v1::GetServiceRequest request;
    request.set_name(name);
    return Unary<hoist::v1::Service>(request, &Control::Stub::GetService);
  }
  absl::StatusOr<hoist::v1::Rollout> Converge(
      const std::string& service) override {
    hoist::v1::ConvergeRequest request;
    request.set_service(service);
    return Unary<hoist::v1::Rollout>(request, &Control::Stub::Converge);
  }
  absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string& id) override {
    hoist::v1::CancelRequest request;
    request.set_id(id);
    return Unary<hoist::v1::Rollout>(request, &Control::Stub::Cancel);
  }
  absl::StatusOr<hoist::v1::TestNotificationResponse> TestNotification(
      const std::string& sink) override {
    hoist::v1::TestNotificationRequest request;
    request.set_sink(sink);
    return Unary<hoist::v1::TestNotificationResponse>(
        request, &Control::Stub::TestNotification);
  }

  absl::Status WatchRollout(
      const std::string& id,
      const std::function<bool(const hoist::v1::RolloutEvent&)>& on_event)
      override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(options_.watch_timeout_seconds));
    hoist::v1::WatchRolloutRequest request;
    request.set_id(id);
    std::unique_ptr<grpc::ClientReader<hoist::v1::RolloutEvent>> reader =
        stub_->WatchRollout(&context, request);
    hoist::v1::RolloutEvent event;
    while (reader->Read(&event)) {
      if (!on_event(event)) {
        context.TryCancel();
        while (reader->Read(&event)) {  // drain until the cancel lands
        }
        reader->Finish().ok();  // CANCELLED by us; not an error
        return absl::OkStatus();
      }
    }
    return FromGrpcStatus(reader->Finish());
  }

 private:
  template <typename Response, typename Request, typename Method>
  absl::StatusOr<Response> Unary(const Request& request, Method method) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(options_.timeout_seconds));
    Response response;
    grpc::Status status = (stub_.get()->*method)(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response;
  }

  std::unique_ptr<Control::Stub> stub_;
  const GrpcControlClientOptions options_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ControlClient>> NewGrpcControlClient(
    const GrpcControlClientOptions& options) {
  HOIST_ASSIGN_OR_RETURN(
      TlsMaterial material,
      LoadTlsMaterial({options.ca, options.cert, options.key}));
  grpc::ChannelArguments args;
  if (!options.tls_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_name);
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      options.server, MutualTlsChannelCredentials(material), args);
  return std::unique_ptr<ControlClient>(
      new GrpcControlClient(Control::NewStub(channel), options));
}

}  // namespace hoist::cli
