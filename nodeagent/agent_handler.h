// AgentHandler: what the NodeAgent gRPC service adapts to. The gRPC class only
// checks authorization and translates; every decision lives behind this
// interface, which tests drive without gRPC. Implemented by DeployManager.
#ifndef HOIST_NODEAGENT_AGENT_HANDLER_H_
#define HOIST_NODEAGENT_AGENT_HANDLER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/deploy_log.h"

namespace hoist::nodeagent {

class AgentHandler {
 public:
  virtual ~AgentHandler() = default;

  // Validates the request and starts the deploy on a worker, returning its
  // log at once. The same deploy_id again returns the existing log (attach).
  // ABORTED naming the running deploy's id when another deploy holds the
  // container name; INVALID_ARGUMENT for a bad request. Thread-safe.
  virtual absl::StatusOr<std::shared_ptr<DeployLog>> Deploy(
      const hoist::v1::DeployRequest& request) = 0;

  // A deploy of the container's previous image. FAILED_PRECONDITION when
  // there is no previous image; otherwise as Deploy.
  virtual absl::StatusOr<std::shared_ptr<DeployLog>> Rollback(
      const hoist::v1::RollbackRequest& request) = 0;

  // The log of one of the last 100 deploys; NOT_FOUND otherwise.
  virtual absl::StatusOr<std::shared_ptr<DeployLog>> Watch(
      const std::string& deploy_id) = 0;

  virtual hoist::v1::AgentStatus GetStatus() = 0;
  virtual absl::StatusOr<hoist::v1::ListContainersResponse>
  ListContainers() = 0;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_AGENT_HANDLER_H_
