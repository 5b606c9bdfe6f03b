// ControlClient: hoistctl's narrow view of the hoist.v1.Control service, so
// the commands can be tested against a fake and the gRPC stub stays in one
// place (grpc_control_client.h).
#ifndef HOIST_CLI_CONTROL_CLIENT_H_
#define HOIST_CLI_CONTROL_CLIENT_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hoist/v1/control.pb.h"

namespace hoist::cli {

// Errors keep the server's status code (UNAVAILABLE, PERMISSION_DENIED,
// NOT_FOUND, ...) and message. Not thread-safe: one command at a time.
class ControlClient {
 public:
  virtual ~ControlClient() = default;

  virtual absl::StatusOr<hoist::v1::ListAgentsResponse> ListAgents() = 0;
  virtual absl::StatusOr<hoist::v1::ListRolloutsResponse> ListRollouts(
      const hoist::v1::ListRolloutsRequest& request) = 0;
  virtual absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) = 0;
  virtual absl::StatusOr<hoist::v1::Rollout> Deploy(
      const hoist::v1::ManualDeployRequest& request) = 0;
  virtual absl::StatusOr<hoist::v1::Rollout> Rollback(
      const std::string& service) = 0;
  virtual absl::StatusOr<hoist::v1::Rollout> Resume(const std::string& id) = 0;
  virtual absl::StatusOr<hoist::v1::ListServicesResponse> ListServices() = 0;
  // NOT_FOUND for a service the receiver's config does not name.
  virtual absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) = 0;
  // Starts a converge rollout of `service`'s drifted hosts; FAILED_PRECONDITION
  // while a rollout of it is active or when nothing drifted.
  virtual absl::StatusOr<hoist::v1::Rollout> Converge(
      const std::string& service) = 0;
  // Asks the receiver to stop rollout `id` and returns at once (the rollout
  // may still be RUNNING while hosts in flight finish); FAILED_PRECONDITION
  // for a finished rollout or during an on_failure rollback.
  virtual absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string& id) = 0;
  // Sends a test message through notify sink `sink` now; NOT_FOUND for no
  // such sink, the sink's error when the send failed.
  virtual absl::StatusOr<hoist::v1::TestNotificationResponse> TestNotification(
      const std::string& sink) = 0;

  // Streams WatchRollout(id), calling `on_event` for each event in order.
  // `on_event` returns false to stop watching (the call is cancelled and
  // WatchRollout returns OK). Returns the stream's final status otherwise.
  virtual absl::Status WatchRollout(
      const std::string& id,
      const std::function<bool(const hoist::v1::RolloutEvent&)>& on_event) = 0;
};

}  // namespace hoist::cli

#endif  // HOIST_CLI_CONTROL_CLIENT_H_
