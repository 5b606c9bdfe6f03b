// FleetWatcher: the receiver's FleetView, kept from one WatchContainers
// stream per configured agent (docs/design.md, "Desired state and
// convergence").
//
// Each agent's stream is opened at Update(); when it ends it is re-opened
// after a backoff (options: 1 s doubling to 30 s, each delay shortened by a
// random fraction up to `jitter` so that a fleet that lost the receiver does
// not reconnect in step). The backoff starts again from its initial value
// once a stream delivered its snapshot. While its stream is down an agent is
// not connected: last_error says why and last_seen keeps the last time it
// answered. Each snapshot (at connect, and when the agent's dockerd is back)
// is followed by a GetStatusAsync that fills version, docker_version and
// last_seen (docs/design.md, "Second-wave decisions" 11).
//
// Threads: gRPC's callbacks and one timer thread of our own (it opens the
// streams that are due), whatever the number of agents.
//
// Ownership: the pool (and the clock) are not owned and must outlive the
// watcher. Thread-safety: every method may be called from any thread except
// from the AgentChangedCallback (which must not call Update or Stop).
#ifndef HOIST_RECEIVER_FLEET_WATCHER_H_
#define HOIST_RECEIVER_FLEET_WATCHER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "receiver/agent_client.h"
#include "receiver/config.h"
#include "receiver/fleet_view.h"

namespace hoist::receiver {

// Container names to watch per agent name: those of the services that target
// the agent (WatchContainersRequest.names; "Second-wave decisions" 11), each
// list sorted and without duplicates. An agent no service targets maps to an
// empty list; every configured agent has an entry.
std::map<std::string, std::vector<std::string>> ContainerNamesByAgent(
    const ReceiverConfig& config);

// How long to wait before re-opening a stream whose backoff is `backoff`: a
// uniform draw in [backoff * (1 - jitter), backoff] for `uniform01` in
// [0, 1]; `jitter` is clamped to [0, 1].
absl::Duration JitteredDelay(absl::Duration backoff, double jitter,
                             double uniform01);

struct FleetWatcherOptions {
  AgentClientPool* pool = nullptr;  // required
  Clock* clock = nullptr;           // default RealClock()
  // Of the GetStatusAsync after each snapshot. Stop() may wait this long
  // for one still unanswered.
  absl::Duration status_deadline = absl::Seconds(5);
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(30);
  double jitter = 0.2;
};

class FleetWatcher : public FleetView {
 public:
  // Starts the timer thread; watches no agent until Update().
  explicit FleetWatcher(FleetWatcherOptions options);
  ~FleetWatcher() override;  // Stop()s

  FleetWatcher(const FleetWatcher&) = delete;
  FleetWatcher& operator=(const FleetWatcher&) = delete;

  // Calls `on_change` (after this returns) with an agent's name after
  // anything about it changed, also when Update() added or removed it. It
  // runs outside the watcher's lock on a gRPC thread, the timer thread or
  // the thread of Update(), must not block and may call Agents()/Agent().
  void SetAgentChangedCallback(AgentChangedCallback on_change);

  // The configured agents (at start, and at each SIGHUP) and, by agent name,
  // the container names to watch (ContainerNamesByAgent; an absent agent
  // watches none). New agents get a stream at once; agents no longer listed
  // have their stream cancelled and are forgotten; an agent whose names or
  // whose pool client changed (the pool was updated first with a new address,
  // TLS name or certificates) gets a new stream at once and is not connected
  // until its snapshot arrives. Does nothing after Stop().
  void Update(
      const std::vector<AgentEntry>& agents,
      const std::map<std::string, std::vector<std::string>>& names_by_agent);

  // Cancels every stream, stops the timer thread and waits until every
  // callback from the pool's clients has returned (GetStatus calls in
  // flight: at most status_deadline). No AgentChangedCallback runs after it
  // returns. Later calls return at once.
  void Stop();

  std::vector<AgentState> Agents() const override;
  std::optional<AgentState> Agent(const std::string& name) const override;
  // No copy: each agent's state is copied on write instead.
  std::shared_ptr<const AgentState> AgentSnapshot(
      const std::string& name) const override;

 private:
  struct Watched;
  // A stream the timer thread is to open (taken under the lock).
  struct Attempt {
    std::string agent;
    uint64_t generation;
    hoist::v1::WatchContainersRequest request;
  };

  void TimerLoop();
  // Agents whose next attempt is due at `now`: each gets a new generation
  // and counts as an open stream.
  std::vector<Attempt> TakeDueLocked(absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time NextDueLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Open(const Attempt& attempt) ABSL_LOCKS_EXCLUDED(mu_);
  // Keeps the handle of `generation`'s stream, or cancels it when the agent
  // moved on (removed, re-opened, stopped) meanwhile.
  void Adopt(const std::string& agent, uint64_t generation,
             std::shared_ptr<AgentClient> client,
             std::unique_ptr<StreamHandle> handle) ABSL_LOCKS_EXCLUDED(mu_);

  void OnEvent(const std::string& agent, uint64_t generation,
               const hoist::v1::ContainersEvent& event)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Applies `event` to `w`; whether a GetStatus should follow (a snapshot).
  bool ApplyLocked(Watched& w, const hoist::v1::ContainersEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStreamDone(const std::string& agent, uint64_t generation,
                    const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  void AskStatus(const std::string& agent, uint64_t generation)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnStatus(const std::string& agent, uint64_t generation,
                const absl::StatusOr<hoist::v1::AgentStatus>& status)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Marks `w` as down and due again at `at`; its stream's later callbacks
  // are ignored. Returns its handle, for the caller to cancel unlocked.
  std::unique_ptr<StreamHandle> RestartLocked(Watched& w, absl::Time at,
                                              const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a new `entry` and `names` to an agent kept by Update(): re-opens
  // its stream (its handle goes to `cancel`) or hastens its next attempt as
  // needed; the caller then stores `entry` and `names`. Whether anything a
  // reader sees changed.
  bool UpdateKeptLocked(Watched& w, const AgentEntry& entry,
                        const std::vector<std::string>& names, absl::Time now,
                        std::vector<std::unique_ptr<StreamHandle>>* cancel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether an open stream must be replaced to apply `entry` and `names`.
  bool NeedsReopenLocked(const Watched& w, const AgentEntry& entry,
                         const std::vector<std::string>& names)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration NextDelayLocked(Watched& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the AgentChangedCallback for each of `agents`, unlocked.
  void Notify(const std::vector<std::string>& agents) ABSL_LOCKS_EXCLUDED(mu_);
  // Counts one callback owed by the pool's clients as returned.
  void Settle() ABSL_LOCKS_EXCLUDED(mu_);

  const FleetWatcherOptions options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  // By agent name; `order_` keeps the config order.
  std::map<std::string, std::unique_ptr<Watched>> agents_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  // Stream and GetStatus callbacks still to come (Stop waits for 0).
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // the timer has to look again
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const AgentChangedCallback> on_change_ ABSL_GUARDED_BY(mu_);
  absl::BitGen random_ ABSL_GUARDED_BY(mu_);
  std::thread timer_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_FLEET_WATCHER_H_
