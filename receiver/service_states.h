// ServiceStates: the Control API's view of the fleet per service and its
// Converge operation (docs/design.md, "Desired state and convergence").
// ConvergenceEngine implements it; tests of the gRPC adapter use a fake.
// Errors are the statuses the RPCs return. Thread-safe.
#ifndef HOIST_RECEIVER_SERVICE_STATES_H_
#define HOIST_RECEIVER_SERVICE_STATES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hoist/v1/control.pb.h"

namespace hoist::receiver {

class ServiceStates {
 public:
  virtual ~ServiceStates() = default;
  // Every configured service, in config order, from memory.
  virtual std::vector<hoist::v1::Service> ListServices() = 0;
  // NOT_FOUND for a service that is not configured.
  virtual absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) = 0;
  // Converges the service's drifted hosts now. NOT_FOUND; FAILED_PRECONDITION
  // while a rollout of the service is active, before its first rollout, or
  // when nothing drifted.
  virtual absl::StatusOr<hoist::v1::Rollout> Converge(
      const std::string& service) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_SERVICE_STATES_H_
