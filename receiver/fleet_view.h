// FleetView: what the receiver knows of each configured agent and the
// containers it runs, kept up to date from the agents' WatchContainers
// streams (docs/design.md, "Desired state and convergence"). Readers (the
// Control API's ListAgents, convergence, the dashboard) answer from it with
// no call to any agent.
#ifndef HOIST_RECEIVER_FLEET_VIEW_H_
#define HOIST_RECEIVER_FLEET_VIEW_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "hoist/v1/agent.pb.h"

namespace hoist::receiver {

// One agent as its stream last described it.
struct AgentState {
  std::string name;     // from the config
  std::string address;  // from the config
  std::map<std::string, std::string> labels;
  // The stream is open and its snapshot arrived: `containers` is current.
  bool connected = false;
  // The agent reaches its dockerd (ContainersEvent.docker_reachable).
  bool docker_reachable = false;
  // From the GetStatus at the stream's latest (re)connect.
  std::string version;
  std::string docker_version;
  // When the agent last answered (a stream message or a GetStatus);
  // InfinitePast when it never did.
  absl::Time last_seen = absl::InfinitePast();
  // Why the agent is not Reachable(): its stream is down (the error it
  // ended with) or the agent cannot reach its dockerd. Empty otherwise.
  std::string last_error;
  // The containers the agent reports, by container name.
  std::map<std::string, hoist::v1::ManagedContainer> containers;
  // The last deploy id the stream reported for each container name, kept
  // after the container is gone: convergence matches a finished rollout's
  // deploys against it even when the container was removed before the
  // rollout's end was evaluated.
  std::map<std::string, std::string> reported_deploys;

  // Reachable for convergence: stream up, snapshot in, dockerd answering.
  bool Reachable() const { return connected && docker_reachable; }
};

class FleetView {
 public:
  virtual ~FleetView() = default;
  // Every configured agent, in config order.
  virtual std::vector<AgentState> Agents() const = 0;
  // One agent; nullopt when it is not configured.
  virtual std::optional<AgentState> Agent(const std::string& name) const = 0;
  // The same without a copy: a snapshot that never changes, shared with
  // the view (nullptr when not configured). For readers that look at every
  // agent often (convergence). This default copies Agent().
  virtual std::shared_ptr<const AgentState> AgentSnapshot(
      const std::string& name) const {
    std::optional<AgentState> agent = Agent(name);
    if (!agent) return nullptr;
    return std::make_shared<const AgentState>(*std::move(agent));
  }
};

// Called with an agent's name after anything about it changed (connected,
// a container changed, …). Runs on a gRPC or watcher thread and must not
// block.
using AgentChangedCallback = std::function<void(const std::string& agent)>;

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_FLEET_VIEW_H_
