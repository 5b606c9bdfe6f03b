// DesiredStates: each service's desired digest, the state the fleet is
// converged to (docs/design.md, "Desired state and convergence"), kept in
// memory and journaled.
//
// Which rollout moves it, and how (docs/design.md, "Desired digest"):
//  - A rollout that is not a converge rollout sets it when it starts RUNNING
//    for the first time, after recording the previous desired state against
//    its id (once: a rollout resumed after a restart finds the record and
//    leaves both alone).
//  - A deploy by tag learns its digest from the first host's PULLED event;
//    the desired digest follows (DigestLearned).
//  - ROLLED_BACK restores the recorded previous desired state; CANCELLED
//    restores it and puts the service on hold (no automatic convergence
//    until the desired digest next changes or an operator converges).
//    SUCCEEDED, FAILED and PAUSED keep the new digest; SUPERSEDED rollouts
//    never ran and touch nothing; converge rollouts touch nothing.
//
// Every change is written to the journal before memory changes; a journal
// error is returned and memory keeps the old value. Thread-safe.
#ifndef HOIST_RECEIVER_DESIRED_STATE_H_
#define HOIST_RECEIVER_DESIRED_STATE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hoist/v1/control.pb.h"
#include "receiver/journal.h"

namespace hoist::receiver {

// The trigger of the rollouts convergence starts.
inline constexpr char kConvergeTrigger[] = "converge";

class DesiredStates {
 public:
  explicit DesiredStates(Journal* journal) : journal_(journal) {}

  // Loads the journaled desired states. A configured service with none gets
  // the digest of its newest SUCCEEDED or FAILED non-converge rollout (the
  // first start after an upgrade), and none when it has no such rollout; a
  // desired state of a service no longer in `services` is forgotten.
  absl::Status Load(const std::vector<std::string>& services);
  // SIGHUP: forgets the services that are no longer configured.
  absl::Status Retain(const std::vector<std::string>& services);

  std::optional<DesiredState> Get(const std::string& service) const;
  std::map<std::string, DesiredState> All() const;

  // `rollout` starts RUNNING (see the file comment).
  absl::Status RolloutRunning(const hoist::v1::Rollout& rollout,
                              absl::Time now);
  // A deploy by tag learned its digest.
  absl::Status DigestLearned(const hoist::v1::Rollout& rollout);
  // `rollout` reached a final state (or PAUSED).
  absl::Status RolloutEnded(const hoist::v1::Rollout& rollout);
  // Clears the service's hold (an operator's Converge).
  absl::Status ClearHold(const std::string& service);

 private:
  // Writes `desired` (or forgets the service when nullopt) to the journal,
  // then memory.
  absl::Status Put(const std::string& service,
                   const std::optional<DesiredState>& desired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Load's derivation from history for services with no desired state.
  absl::Status FillFromHistory(const std::vector<std::string>& services)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The restore of ROLLED_BACK and CANCELLED.
  absl::Status Restore(const hoist::v1::Rollout& rollout, bool hold)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Journal* const journal_;
  mutable absl::Mutex mu_;
  std::map<std::string, DesiredState> desired_ ABSL_GUARDED_BY(mu_);
};

// True for rollouts convergence started.
bool IsConvergeRollout(const hoist::v1::Rollout& rollout);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_DESIRED_STATE_H_
