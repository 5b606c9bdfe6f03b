// RolloutController: the rollout operations the Control API offers, as
// ControlService sees them. RolloutManager implements it; tests of the gRPC
// adapter use a fake. Errors are the statuses the RPCs return (absl codes
// map one to one to gRPC codes). All methods are thread-safe.
#ifndef HOIST_RECEIVER_ROLLOUT_CONTROLLER_H_
#define HOIST_RECEIVER_ROLLOUT_CONTROLLER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hoist/v1/control.pb.h"
#include "receiver/rollout_subscription.h"

namespace hoist::receiver {

class RolloutController {
 public:
  virtual ~RolloutController() = default;

  // Deploys `digest` (or `tag` when digest is empty) of `service` now; never
  // deduplicated. NOT_FOUND for an unknown service.
  virtual absl::StatusOr<hoist::v1::Rollout> ManualDeploy(
      const std::string& service, const std::string& digest,
      const std::string& tag) = 0;
  // Deploys the digest of the service's previous SUCCEEDED rollout before its
  // latest SUCCEEDED one (trigger "rollback"). FAILED_PRECONDITION when the
  // journal has no such earlier digest.
  virtual absl::StatusOr<hoist::v1::Rollout> RollbackService(
      const std::string& service) = 0;
  // Continues a PAUSED rollout with its remaining hosts.
  virtual absl::StatusOr<hoist::v1::Rollout> Resume(const std::string& id) = 0;
  // NOT_FOUND for an unknown rollout.
  virtual absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) = 0;
  // Newest first, at most `limit`; all services when `service` is empty.
  virtual absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) = 0;
  // Subscribes to `id`: the full rollout is queued first. `notify` is called
  // (from any thread, must not block or call back into the controller)
  // whenever an event was queued. NOT_FOUND for an unknown rollout.
  virtual absl::StatusOr<std::shared_ptr<RolloutSubscription>> Watch(
      const std::string& id, std::function<void()> notify) = 0;
  // Stops a PENDING, RUNNING or PAUSED rollout: no new host starts, hosts in
  // flight finish, then it ends CANCELLED (at once when none is in flight).
  // Returns the rollout as it is when the request is taken. NOT_FOUND for
  // an unknown rollout; FAILED_PRECONDITION for a finished one or during its
  // on_failure rollback.
  virtual absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string& id) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ROLLOUT_CONTROLLER_H_
