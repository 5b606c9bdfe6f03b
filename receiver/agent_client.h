// AgentClient: the receiver's narrow view of one node agent. The production
// implementation (agent_client_grpc.h) wraps the generated stub over one
// long-lived mTLS channel per agent; tests use a fake.
//
// Streaming calls are asynchronous so that a rollout to many hosts needs no
// thread per host: `on_event` is called for each DeployEvent and `on_done`
// exactly once with the stream's final status. Callbacks run on gRPC threads
// and must not block. Thread-safe.
//
// WatchContainers is the one call without a deadline: it stays open until
// the caller cancels it (docs/design.md, "Desired state and convergence");
// the channel's keepalive notices an agent that went silent.
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
using ContainersEventCallback =
    std::function<void(const hoist::v1::ContainersEvent&)>;

// Cancels one open stream. Cancel() is thread-safe, idempotent, never blocks
// and may be called after the stream ended (it then does nothing); the
// stream's `on_done` still runs exactly once (CANCELLED, unless the stream
// had already ended otherwise), possibly inline on the cancelling thread, so
// the caller must not hold a lock that callback takes. Destroying a handle
// does not cancel its stream.
class StreamHandle {
 public:
  virtual ~StreamHandle() = default;
  virtual void Cancel() = 0;
};

// The handle of a stream that already ended: Cancel() does nothing.
class EndedStreamHandle : public StreamHandle {
 public:
  void Cancel() override {}
};

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

  // Opens the agent's WatchContainers stream: `on_event` for each
  // ContainersEvent (the first a snapshot), `on_done` exactly once when the
  // stream ends (an error status when the agent cannot be reached or went
  // away; CANCELLED after StreamHandle::Cancel). No deadline: open until
  // cancelled. Callbacks for one stream never run concurrently; they run on
  // gRPC threads (fakes: any thread, `on_done` possibly before this returns)
  // and must not block. This default, for test doubles that do not watch,
  // ends the stream UNIMPLEMENTED inline.
  virtual std::unique_ptr<StreamHandle> WatchContainers(
      const hoist::v1::WatchContainersRequest& /*request*/,
      // NOLINTNEXTLINE(performance-unnecessary-value-param): overrides keep it
      ContainersEventCallback /*on_event*/, DoneCallback on_done) {
    const DoneCallback done = std::move(on_done);
    done(absl::UnimplementedError("this agent client cannot watch"));
    return std::make_unique<EndedStreamHandle>();
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
