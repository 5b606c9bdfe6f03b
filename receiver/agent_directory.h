// AgentDirectory: what the receiver knows of its configured agents, for the
// Control API's ListAgents (docs/design.md, "gRPC API", Control: ListAgents
// asks every configured agent's GetStatus; reachable, versions, last_seen
// and last_error come from that).
//
// List() asks every agent at once with the asynchronous GetStatus, so
// listing a thousand agents needs no thread per agent, and answers when the
// last one has answered or failed. Between calls the directory remembers
// when each agent (by name) last answered, so that an agent that is down
// still shows when it was last seen.
//
// Ownership: `pool` and `clock` are not owned and must outlive the
// directory. Thread-safety: List() may be called from any thread,
// concurrently. The destructor waits until every List() has called its
// callback (the answers still to come use the directory); no List() may
// start once it runs.
#ifndef HOIST_RECEIVER_AGENT_DIRECTORY_H_
#define HOIST_RECEIVER_AGENT_DIRECTORY_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "hoist/v1/control.pb.h"
#include "receiver/agent_client.h"
#include "receiver/config.h"

namespace hoist::receiver {

class AgentDirectory {
 public:
  using ListCallback = std::function<void(std::vector<hoist::v1::AgentInfo>)>;

  // Each GetStatus call has `status_deadline` (2 s in the daemon). `clock`
  // times last_seen; default RealClock().
  AgentDirectory(AgentClientPool* pool, absl::Duration status_deadline,
                 Clock* clock = nullptr);
  ~AgentDirectory();

  AgentDirectory(const AgentDirectory&) = delete;
  AgentDirectory& operator=(const AgentDirectory&) = delete;

  // Calls `done` exactly once with one AgentInfo per entry of `agents`, in
  // that order: name, address and labels from the entry; reachable, version
  // and docker_version from this call's GetStatus; last_error its error when
  // it failed (an agent the pool has no client for is unreachable with the
  // pool's error); last_seen the time of the latest GetStatus that
  // succeeded, in this call or an earlier one (unset when none did). `done`
  // runs on the thread of the last answer (a gRPC thread, or the caller's
  // when every answer came at once) and must not block.
  void List(const std::vector<AgentEntry>& agents, ListCallback done);

 private:
  // One List() call in flight (defined in the .cc file).
  struct Gather;

  // Builds the answer of a List() whose agents have all answered, calls its
  // callback and counts it done.
  void Complete(Gather& gather);
  // One agent's entry; records `now` as its last_seen when `status` is OK.
  hoist::v1::AgentInfo Describe(
      const AgentEntry& agent,
      const absl::StatusOr<hoist::v1::AgentStatus>& status, absl::Time now);

  AgentClientPool* const pool_;
  const absl::Duration status_deadline_;
  Clock* const clock_;
  absl::Mutex mu_;
  // By agent name; agents that never answered are absent.
  std::map<std::string, absl::Time> last_seen_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // List() calls not done
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_AGENT_DIRECTORY_H_
