// ConvergenceEngine: compares each service's desired digest (DesiredStates)
// with what its target hosts run (FleetView) and converges the difference
// with ordinary rollouts (docs/design.md, "Desired state and convergence").
//
//  - Per (service, host) it keeps a Convergence value, when it last changed,
//    and the host's converge attempts (journaled, so counters survive a
//    restart).
//  - `converge: auto` services: a host MISSING, STOPPED or OTHER_DIGEST for
//    converge_policy.delay_seconds, reachable, not GAVE_UP and past its
//    next_attempt is converged by a rollout with trigger "converge" over the
//    drifted hosts only. Nothing starts while a rollout of the service is
//    PENDING, RUNNING or PAUSED, while the service is on hold (Cancel), or
//    before the service has a desired digest. FOREIGN and UNREACHABLE hosts
//    are only reported.
//  - A converge rollout's failed host counts an attempt; the next one waits
//    retry_initial_seconds doubling up to retry_max_seconds; after
//    max_attempts the host is GAVE_UP until the desired digest changes or an
//    operator calls Converge. Attempts reset when the host is IN_SYNC.
//  - After a rollout ends, a host it deployed is not treated as drifted
//    until its agent's stream has reported that deploy (the stream may lag
//    the rollout's own events), for at most kDeployEchoWait. A report that
//    came before the rollout's end counts, even if the container is gone
//    again since (AgentState::reported_deploys).
//  - `report` and `off` compute the states and start nothing (`report` logs
//    each new drift).
//
// Evaluations are incremental: one looks again at the hosts whose agents
// reported a change, the hosts of rollouts that ended and the hosts whose
// deploy echo wait ran out; every host of a service only when its desired
// digest or the config changed. Delays and backoffs need no new look: a
// drifted host's track says when it falls due, and only services that may
// converge ask. Its cost follows the changes, not the fleet's size
// (docs/scaling.md, "100 drifted at once").
//
// Threads: one evaluation thread. The fleet's and the rollout manager's
// callbacks only mark work and wake it; every public method is thread-safe.
#ifndef HOIST_RECEIVER_CONVERGENCE_H_
#define HOIST_RECEIVER_CONVERGENCE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "hoist/v1/control.pb.h"
#include "receiver/config.h"
#include "receiver/deploy_intent.h"
#include "receiver/desired_state.h"
#include "receiver/fleet_view.h"
#include "receiver/journal.h"
#include "receiver/service_states.h"

namespace hoist::receiver {

// What a host runs under `container_name` compared with `desired` (nullopt:
// the service has none yet), before convergence's own states (CONVERGING,
// GAVE_UP) are applied. `agent` nullptr: not configured.
struct HostObservation {
  hoist::v1::Convergence convergence = hoist::v1::CONVERGENCE_UNSPECIFIED;
  std::string running_digest;
  std::string container_state;
};
HostObservation Observe(const AgentState* agent,
                        const std::string& container_name,
                        const std::optional<DesiredState>& desired);

// True for the states convergence fixes: MISSING, STOPPED, OTHER_DIGEST.
bool IsDrift(hoist::v1::Convergence convergence);

struct ConvergenceOptions {
  FleetView* fleet = nullptr;          // required, not owned
  DesiredStates* desired = nullptr;    // required, not owned
  Journal* journal = nullptr;          // required, not owned (attempts)
  Clock* clock = nullptr;              // default RealClock()
  MetricsRegistry* metrics = nullptr;  // optional, not owned
  // The service's PENDING, RUNNING or PAUSED rollout, if any
  // (RolloutManager::ActiveRolloutOf).
  std::function<std::optional<std::string>(const std::string& service)>
      active_rollout_of;
  // Journals and queues a rollout (RolloutManager::StartRollout).
  std::function<absl::StatusOr<hoist::v1::Rollout>(const DeployIntent&)>
      start_rollout;
  // Optional: reports the notification events convergence owns
  // (docs/design.md, "Notifications"): "drift" when a host starts drifting
  // and "converge_gave_up" when a host's converge attempts run out, with the
  // service, the host and what was seen. The receiver journals them in the
  // outbox (NotificationSender::Enqueue). Called on the engine's thread with
  // its lock held, like the engine's own journal writes; must not call back
  // into the engine.
  std::function<void(const std::string& event, const std::string& service,
                     const std::string& agent, const std::string& detail)>
      notify;
  // Optional: a host's shown state changed (what GetService says of it),
  // whatever caused it: a stream event, a rollout, an echo wait that ran
  // out, a converge rollout started. The receiver republishes the fleet view
  // for followers (FleetPublisher::Changed). Called on the engine's thread
  // with its lock held; must not block nor call back into the engine.
  std::function<void()> shown_changed;
};

class ConvergenceEngine : public ServiceStates {
 public:
  // How long a host a rollout deployed waits for its stream to report that
  // deploy before drift counts again.
  static constexpr absl::Duration kDeployEchoWait = absl::Seconds(30);

  ConvergenceEngine(ConvergenceOptions options,
                    std::shared_ptr<const ReceiverConfig> config);
  ~ConvergenceEngine() override;  // Stop()s

  ConvergenceEngine(const ConvergenceEngine&) = delete;
  ConvergenceEngine& operator=(const ConvergenceEngine&) = delete;

  // Loads the journaled attempts. Call once, before Start().
  absl::Status Load();
  void Start();
  void Stop();  // idempotent

  // SIGHUP: services, targets, modes and converge_policy.
  void UpdateConfig(std::shared_ptr<const ReceiverConfig> config);

  // Feeds: the fleet watcher's AgentChangedCallback and the rollout
  // manager's on_state_change. Never block.
  void AgentChanged(const std::string& agent);
  void RolloutChanged(const hoist::v1::Rollout& rollout);

  // The Control API's views. GetService: NOT_FOUND for an unknown service.
  std::vector<hoist::v1::Service> ListServices() override;
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override;
  // An operator's Converge: clears hold and GAVE_UP, skips delay and
  // backoff. NOT_FOUND, or FAILED_PRECONDITION while a rollout of the
  // service is active, before its first rollout, or when nothing drifted.
  absl::StatusOr<hoist::v1::Rollout> Converge(
      const std::string& service) override;

  // Evaluates now, on the caller's thread, what the feeds marked since the
  // last evaluation (everything the first time and after UpdateConfig), as
  // the evaluation thread does. For tests (with a FakeClock) and that thread.
  void EvaluateNow();

 private:
  // What convergence tracks for one (service, host).
  struct HostTrack {
    HostObservation seen;
    hoist::v1::Convergence shown = hoist::v1::CONVERGENCE_UNSPECIFIED;
    absl::Time since = absl::InfinitePast();          // `shown` changed
    absl::Time drift_since = absl::InfiniteFuture();  // drifted since
    ConvergeAttempts attempts;
    std::string converging;       // id of the converge rollout on it
    std::string expected_deploy;  // last deploy a rollout made here
    absl::Time expected_until = absl::InfinitePast();
  };
  using Key = std::pair<std::string, std::string>;  // (service, agent)
  // A service's target hosts under one config, in config order.
  struct Targets {
    std::vector<const AgentEntry*> agents;
    std::map<std::string, size_t> index;  // agent name -> position
  };

  // The targets of every service of `config` (ResolveTargets, computed once
  // per config). A new config also drops the drifted sets and marks every
  // host for the next evaluation.
  const Targets& TargetsOf(const ReceiverConfig& config,
                           const std::string& service)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CacheTargets(const std::shared_ptr<const ReceiverConfig>& config)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings the hosts of `service` among `changed` (nullptr: every host), and
  // those whose deploy echo wait ran out, up to date.
  void Refresh(const ServiceConfig& service, const ReceiverConfig& config,
               const std::set<std::string>* changed, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The drifted hosts of `service` due for a converge rollout, in config
  // order (`force`: ignore delay, backoff, GAVE_UP).
  std::vector<std::string> DueHosts(const ServiceConfig& service,
                                    const ConvergePolicy& policy, bool force,
                                    absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Observes the host at `position` of `service`'s targets.
  void RefreshHost(const ServiceConfig& service, const Targets& targets,
                   size_t position, const std::optional<DesiredState>& desired,
                   absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Attempts and GAVE_UP last until the service's desired digest changes.
  // True when it changed (every host's observation changes with it).
  bool ResetOnNewDigest(const ServiceConfig& service,
                        const ReceiverConfig& config,
                        const std::optional<DesiredState>& desired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetAttempts(const std::string& service, const std::string& agent,
                     HostTrack& track) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies one observation of host `agent_name` (`agent` its state, nullptr
  // when unknown) to its track: drift start, attempts reset, shown state.
  void Track(const ServiceConfig& service, const std::string& agent_name,
             HostTrack& track, const HostObservation& seen,
             const AgentState* agent, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Due(const HostTrack& track, const ConvergePolicy& policy, bool force,
           absl::Time now) const;
  // Starts a converge rollout of `agents` and marks them CONVERGING.
  absl::StatusOr<hoist::v1::Rollout> StartConverge(
      const std::string& service, const DesiredState& desired,
      const std::vector<std::string>& agents) ABSL_LOCKS_EXCLUDED(mu_);
  // A rollout ended: its hosts stop CONVERGING, hosts it deployed wait for
  // their stream's echo, and a converge rollout's failed hosts count an
  // attempt.
  void RolloutEnded(const hoist::v1::Rollout& rollout, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SaveAttempts(const ConvergeAttempts& attempts);
  // Drops the tracks of hosts no service targets any more.
  void Forget(const ReceiverConfig& config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  hoist::v1::Service Describe(const ServiceConfig& service,
                              const ReceiverConfig& config)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The hosts gauge of each service whose hosts' states changed.
  void PublishGauges(const ReceiverConfig& config)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetShown(const std::string& service, HostTrack& track,
                hoist::v1::Convergence shown, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When the next drifted host of `service` falls due after `now`
  // (InfiniteFuture: none). Only services that may converge ask: a thread
  // woken for a host that cannot act would spin (MISSING hosts of a service
  // with no desired digest, report mode, on hold).
  absl::Time NextDue(const ServiceConfig& service, const ReceiverConfig& config,
                     absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Loop();

  ConvergenceOptions options_;
  Clock* const clock_;
  std::unique_ptr<MetricsRegistry> own_metrics_;
  MetricsRegistry* metrics_;
  absl::Mutex eval_mu_;  // one evaluation at a time
  absl::Mutex mu_;
  std::shared_ptr<const ReceiverConfig> config_ ABSL_GUARDED_BY(mu_);
  std::map<Key, HostTrack> hosts_ ABSL_GUARDED_BY(mu_);
  // TargetsOf's cache, for `targets_for_`.
  std::shared_ptr<const ReceiverConfig> targets_for_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Targets> targets_ ABSL_GUARDED_BY(mu_);
  // Per service, the target positions whose host is MISSING, STOPPED or
  // OTHER_DIGEST as last observed: the hosts that may fall due.
  std::map<std::string, std::set<size_t>> drifted_ ABSL_GUARDED_BY(mu_);
  // Per service, the target positions whose host waits for its deploy's
  // echo (HostTrack::expected_deploy).
  std::map<std::string, std::set<size_t>> awaiting_echo_ ABSL_GUARDED_BY(mu_);
  // Services whose hosts gauge is stale.
  std::set<std::string> gauges_stale_ ABSL_GUARDED_BY(mu_);
  // The next evaluation looks at every host (a new config was cached).
  bool refresh_all_ ABSL_GUARDED_BY(mu_) = true;
  // Desired digest each service's attempts were counted against.
  std::map<std::string, std::string> attempts_digest_ ABSL_GUARDED_BY(mu_);
  // The feeds' side: callbacks only take wake_mu_, never mu_ (which an
  // evaluation holds across journal writes).
  absl::Mutex wake_mu_;
  std::vector<hoist::v1::Rollout> ended_ ABSL_GUARDED_BY(wake_mu_);
  std::set<std::string> changed_agents_ ABSL_GUARDED_BY(wake_mu_);
  bool dirty_ ABSL_GUARDED_BY(wake_mu_) = true;
  // When the evaluation thread must look again without being woken (set by
  // each evaluation).
  absl::Time next_due_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The config whose removed hosts were last forgotten (Forget runs once
  // per config, not per evaluation).
  std::shared_ptr<const ReceiverConfig> forgotten_for_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(wake_mu_) = false;
  std::thread thread_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_CONVERGENCE_H_
