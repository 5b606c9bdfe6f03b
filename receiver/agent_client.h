// AgentClient: the receiver's narrow view of one node agent. The production
// implementation (agent_client_grpc.h) wraps the generated stub over one
// long-lived mTLS channel per agent; tests use a fake.
//
// Streaming calls are asynchronous so that a rollout to many hosts needs no
// thread per host: `on_event` is called for each DeployEvent and `on_done`
// exactly once with the stream's final status. Callbacks run on gRPC threads
// and must not block. Thread-safe.
#ifndef HOIST_RECEIVER_AGENT_CLIENT_H_
#define HOIST_RECEIVER_AGENT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hoist/v1/agent.pb.h"

namespace hoist::receiver {

using DeployEventCallback = std::function<void(const hoist::v1::DeployEvent&)>;
using DoneCallback = std::function<void(absl::Status)>;

class AgentClient {
 public:
  virtual ~AgentClient() = default;

  virtual void Deploy(const hoist::v1::DeployRequest& request,
                      absl::Duration deadline, DeployEventCallback on_event,
                      DoneCallback on_done) = 0;
  virtual void Rollback(const hoist::v1::RollbackRequest& request,
                        absl::Duration deadline, DeployEventCallback on_event,
                        DoneCallback on_done) = 0;
  virtual void WatchDeploy(const std::string& deploy_id,
                           absl::Duration deadline,
                           DeployEventCallback on_event,
                           DoneCallback on_done) = 0;

  // Blocking unary call with `deadline`.
  virtual absl::StatusOr<hoist::v1::AgentStatus> GetStatus(
      absl::Duration deadline) = 0;

  using StatusCallback =
      std::function<void(absl::StatusOr<hoist::v1::AgentStatus>)>;
  // Asynchronous GetStatus: `on_done` is called exactly once, on a gRPC thread
  // (or, in this default implementation for test doubles, inline after the
  // blocking call), and must not block. Asking a thousand agents this way
  // needs no thread per agent.
  virtual void GetStatusAsync(absl::Duration deadline, StatusCallback on_done) {
    // Taken by value as every implementation keeps it; this one calls it
    // once.
    const StatusCallback done = std::move(on_done);
    done(GetStatus(deadline));
  }
};

// Gives the client for an agent by its config name. Thread-safe.
class AgentClientPool {
 public:
  virtual ~AgentClientPool() = default;
  // NOT_FOUND for an agent that is not configured.
  virtual absl::StatusOr<std::shared_ptr<AgentClient>> Get(
      const std::string& agent_name) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_AGENT_CLIENT_H_
